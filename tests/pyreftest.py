"""Shared helpers for pyref's tests: interpreters, traced builds, real cores, gdb batch.

Everything here drives real parts: gcc with `bin/pyref-config` flags, real interpreters,
kernel core dumps (`ulimit -c unlimited` + a real crash) or gdb's gcore, `gdb -batch -nx`.
"""
import glob
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
PYREF_CONFIG = os.path.join(ROOT, "bin", "pyref-config")
GDBEXT = os.path.join(ROOT, "gdbext")
LOADER = os.path.join(GDBEXT, "pyref-gdb.py")
sys.path.insert(0, GDBEXT)


# ---------------------------------------------------------------------------------------
# Interpreters
# ---------------------------------------------------------------------------------------
def _pyenv(minor):
    hits = sorted(glob.glob(os.path.expanduser(
        "~/.pyenv/versions/3.%d.*/bin/python3.%d" % (minor, minor))))
    hits = [h for h in hits if re.search(r"/3\.%d\.\d+/" % minor, h)]
    return hits[-1] if hits else None


# `make interpreters` (mk/interpreters.mk) prepares 3.13t, 3.14(d), 3.15(d) and GDB 18 into
# this cache and describes them in its interpreters.json.
CACHE = os.environ.get("PYREF_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pyref")
ALL = ("3.10", "3.11", "3.11d", "3.12", "3.13", "3.13t", "3.14", "3.14d", "3.15", "3.15d")
# The interpreters a suite runs on. `make check` runs the representative suites (show,
# history, pystack: every_version()) on all of ALL and the others on CURRENT;
# `make check-matrix` (mk/interpreters.mk) runs the rest: PYREF_MATRIX=1 makes interpreters() the
# versions outside CURRENT and every_version() empty (make check ran them), and
# PYREF_MATRIX=all makes both ALL (the gdb suites under GDB 18: PYREF_GDB=gdb18).
CURRENT = ("3.10", "3.11", "3.11d", "3.12", "3.13")
MATRIX = os.environ.get("PYREF_MATRIX", "")
_manifest = None


def manifest():
    """The cache's interpreters.json ({} entries when `make interpreters` has not run)."""
    global _manifest
    if _manifest is None:
        try:
            with open(os.path.join(CACHE, "interpreters.json")) as f:
                _manifest = json.load(f)
        except (OSError, ValueError):
            _manifest = {}
        for key in ("interpreters", "debuggers", "skipped"):
            _manifest.setdefault(key, {})
    return _manifest


def interpreter(ident):
    """(executable, None) for an interpreter id of ALL, or (None, why it is missing)."""
    if ident == "3.11d":
        return "/usr/bin/python3.11d", None
    m = re.match(r"3\.(\d+)$", ident)
    if m and int(m.group(1)) <= 13:
        exe = _pyenv(int(m.group(1)))
        return (exe, None) if exe else (
            None, "pyenv interpreter %s not installed under ~/.pyenv/versions" % ident)
    info = manifest()["interpreters"].get(ident)
    if info and os.path.exists(info["executable"]):
        return info["executable"], None
    return None, "%s: %s" % (ident, manifest()["skipped"].get(
        ident, "not prepared (make interpreters; cache %s)" % CACHE))


def interpreters(ids=None):
    """pytest params, one per interpreter id (`ids`, by default the suite's share of the
    matrix: CURRENT, or per PYREF_MATRIX); a missing one is skipped with the reason,
    python3.11d is required (make deps installs it)."""
    if ids is None:
        ids = {"1": tuple(i for i in ALL if i not in CURRENT), "all": ALL}.get(MATRIX,
                                                                             CURRENT)
    params = []
    for ident in ids:
        exe, reason = interpreter(ident)
        marks = pytest.mark.skip(reason=reason) if reason else ()
        params.append(pytest.param(exe or "missing-" + ident, id=ident, marks=marks))
    return params


def every_version(ids=ALL):
    """interpreters() of a representative suite, which `make check` runs on all of `ids`
    (none under PYREF_MATRIX=1: `make check-matrix` runs only what `make check` did not)."""
    return interpreters({"1": (), "all": ids}.get(MATRIX, ids))


def default_gdb():
    """The gdb a test runs when it names none: PYREF_GDB (a path, or gdb18: the prepared
    GDB 18), else GDB 13 (/usr/bin/gdb)."""
    want = os.environ.get("PYREF_GDB") or "/usr/bin/gdb"
    if want == "gdb18":
        info = manifest()["debuggers"].get("gdb18")
        if not info or not os.path.exists(info["path"]):
            pytest.skip("PYREF_GDB=gdb18: %s" % manifest()["skipped"].get(
                "gdb18", "not prepared (make interpreters; cache %s)" % CACHE))
        return info["path"]
    return want


def gcore_gdb(python):
    """The gdb to write a live process's core with (generate-core-file): GDB 13 leaves out
    a mapping of a Debian unstable interpreter ("Memory read failed for corefile section",
    1 MiB: a thread's data stack), so those cores are written by GDB 18 when prepared."""
    info = manifest()["debuggers"].get("gdb18")
    if interpreter_info(python).get("gdb_init") and info and os.path.exists(info["path"]):
        return info["path"]
    return None


def interpreter_info(python):
    """The manifest's entry for an executable (cflags, gdb_init, ...), {} for one it does
    not describe (pyenv's and Debian 12's need nothing extra)."""
    real = os.path.realpath(python)
    for info in manifest()["interpreters"].values():
        if os.path.realpath(info["executable"]) == real:
            return info
    return {}


def gdbs():
    """pytest params, one per debugger: GDB 13 (/usr/bin/gdb) and the prepared GDB 18."""
    params = [pytest.param("/usr/bin/gdb", id="gdb13")]
    info = manifest()["debuggers"].get("gdb18")
    reason = None if info and os.path.exists(info["path"]) else "gdb18: %s" % manifest()[
        "skipped"].get("gdb18", "not prepared (make interpreters; cache %s)" % CACHE)
    params.append(pytest.param(info["path"] if not reason else "missing-gdb18", id="gdb18",
                               marks=pytest.mark.skip(reason=reason) if reason else ()))
    return params


def py_version(python):
    out = subprocess.check_output(
        [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1], "
         "int(hasattr(sys, 'gettotalrefcount')))"], text=True).split()
    return int(out[0]), int(out[1]), bool(int(out[2]))


# ---------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------
def ensure_runtime():
    if not os.path.exists(os.path.join(BUILD, "libpyref.so")):
        subprocess.check_call(["make", "-s", "-C", ROOT, "all"])


def pyref_flags(python, what):
    return subprocess.check_output([PYREF_CONFIG, "--python", python, what],
                                   text=True).split()


def build_ext(src, python, outdir, modname=None, traced=True, cc="gcc", extra_cflags=(),
              static=False):
    """Compile one C (or C++) source into an extension module for `python`, through the
    pyref shim when `traced`. Returns the module's path. The module name is the source's
    basename unless given."""
    ensure_runtime()
    modname = modname or os.path.splitext(os.path.basename(src))[0]
    suffix = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        text=True).strip()
    out = os.path.join(outdir, modname + suffix)
    inc = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
        text=True).strip()
    cmd = [cc, "-g", "-O1", "-fPIC", "-shared", "-Wall"]
    if traced:
        cmd += pyref_flags(python, "--cflags")
    else:
        cmd += ["-I" + inc]
    cmd += interpreter_info(python).get("cflags", [])
    cmd += list(extra_cflags) + [src, "-o", out]
    if traced:
        cmd += pyref_flags(python, "--static-libs" if static else "--libs")
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, "build failed: %s\n%s" % (" ".join(cmd), p.stderr[-4000:])
    return out


# ---------------------------------------------------------------------------------------
# Running to a core
# ---------------------------------------------------------------------------------------
def _core_limit():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def kernel_cores_here():
    """True when the kernel writes core files into the crashing process's cwd."""
    try:
        with open("/proc/sys/kernel/core_pattern") as f:
            pat = f.read().strip()
    except OSError:
        return False
    return not pat.startswith("|") and "/" not in pat


def _find_core(cwd, pid):
    for name in ("core.%d" % pid, "core"):
        p = os.path.join(cwd, name)
        if os.path.exists(p):
            return p
    hits = glob.glob(os.path.join(cwd, "core*"))
    return hits[0] if hits else None


def run_to_core(python, args, cwd, env=None, timeout=120, gdb=None):
    """Runs `python args...` in `cwd` until it dies of a signal and returns
    (core_path, CompletedProcess). Uses the kernel's core dump when core_pattern writes
    to the cwd, else runs the program under `gdb` (default: gcore_gdb's, else
    default_gdb()) and takes gcore
    at the fatal signal."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    if kernel_cores_here():
        p = subprocess.run([python] + list(args), cwd=cwd, env=full_env, capture_output=True,
                           text=True, preexec_fn=_core_limit, timeout=timeout)
        assert p.returncode < 0, "expected a crash, got exit %d\n%s" % (p.returncode, p.stderr)
        core = None
        for _ in range(50):  # the kernel may still be writing
            core = _find_core(cwd, 0)
            if core:
                break
            import time
            time.sleep(0.1)
        assert core, "no core file in %s (core_pattern?)" % cwd
        return core, p
    core = os.path.join(cwd, "core.gcore")
    cmd = [gdb or gcore_gdb(python) or default_gdb(), "-batch", "-nx"] + \
        [a for c in _gdb_init(python) for a in ("-iex", c)] + [
           "-ex", "set pagination off",
           "-ex", "handle SIGABRT stop nopass", "-ex", "handle SIGSEGV stop nopass",
           "-ex", "run", "-ex", "generate-core-file " + core, "--args", python] + list(args)
    p = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                       timeout=timeout)
    assert os.path.exists(core), p.stdout + p.stderr
    return core, p


# ---------------------------------------------------------------------------------------
# gdb
# ---------------------------------------------------------------------------------------
def _gdb_init(*programs):
    """The gdb commands the manifest gives for the first of `programs` it describes (a
    prepared interpreter's debug-file directory, ...), to run before gdb loads anything."""
    for p in programs:
        if isinstance(p, str) and os.path.isabs(p):
            init = interpreter_info(p).get("gdb_init")
            if init is not None:
                return list(init)
    return []


def gdb_command(commands=(), args=(), load_pyref=True, early=(), loader=LOADER, gdb=None,
                python=None):
    """The one `gdb -batch -nx` command line of the tests (`gdb`: a path, default
    default_gdb(); see gdbs()): `early` commands before gdb reads its arguments (-iex), after
    those a prepared interpreter needs (`python`'s, else those of the first of `args` that
    is one), settings pinned (no pager, no line wrapping, no inferior calls, no
    debuginfod), pyref's `loader` sourced unless `load_pyref` is false, then each command
    (-ex) and `args` (the program, a core, --args ...)."""
    cmd = [gdb or default_gdb(), "-batch", "-nx"]
    for c in _gdb_init(python, *args) + list(early):
        cmd += ["-iex", c]
    cmd += ["-ex", "set pagination off", "-ex", "set width 0",
            "-ex", "set may-call-functions off", "-ex", "set debuginfod enabled off"]
    if load_pyref:
        cmd += ["-x", loader]
    for c in commands:
        cmd += ["-ex", c]
    return cmd + list(args)


def gdb_batch(commands, args=(), load_pyref=True, timeout=300, cwd=None, gdb=None,
              python=None):
    """Runs gdb_command(commands, args, load_pyref, gdb=gdb, python=python). Returns
    combined stdout+stderr."""
    p = subprocess.run(gdb_command(commands, args, load_pyref, gdb=gdb, python=python),
                       capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return p.stdout + p.stderr


def marker_lines(src):
    """{marker: line} for `/* @marker */` comments in a source file: tests name lines by
    marker, never by number."""
    lines = {}
    with open(src) as f:
        for n, text in enumerate(f, 1):
            for m in re.findall(r"/\*\s*@([\w-]+)\s*\*/", text):
                lines[m] = n
    return lines


# ---------------------------------------------------------------------------------------
# Reading a core without gdb
# ---------------------------------------------------------------------------------------
def ring_from_core(core_path):
    """(ring, site) for a core: the ring decoded by gdbext's gdb-free decoder through the
    ELF core reader, and site(record) -> (basename, line, func, api) or None."""
    from pyref.reader import corefile, decode, sites
    core = corefile.Core(core_path)
    sym = core.symbol("pyref_ring")
    assert sym, "no pyref_ring symbol in the core's mapped files"
    addr = int.from_bytes(core.read(sym, 8), "little")
    ring = decode.decode_ring(core.read, addr)
    cache = {}

    def site(rec):
        if rec.site not in cache:
            s = sites.read_site(core.read, rec.site) if rec.site else None
            cache[rec.site] = None if s is None else (
                os.path.basename(s.file), s.line, s.func, s.api)
        return cache[rec.site]
    return ring, site


# ---------------------------------------------------------------------------------------
# The routes extension (tests/ext/routes): one object, CHURN INCREF/DECREF pairs
# ---------------------------------------------------------------------------------------
ROUTES = os.path.join(ROOT, "tests", "ext", "routes")
ROUTES_SRC = os.path.join(ROUTES, "src", "routesext.c")
ROUTES_CHURN = 5


def routes_driver_args(moddir, how="abort"):
    """The routes driver's arguments: ROUTES_CHURN pairs on one object (it prints
    `obj 0x...`), then `how` (abort: a core)."""
    return [os.path.join(ROUTES, "driver.py"), moddir, GDBEXT, str(ROUTES_CHURN), how]
