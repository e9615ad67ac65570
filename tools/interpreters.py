#!/usr/bin/python3
"""Prepare the interpreters and the debugger that Debian 12 does not package, into a cache
outside the tree (`make interpreters`, run by `make deps`).

  tools/interpreters.py [--cache DIR] [--refresh]

Parts, each prepared once, behind a stamp written last (a part without its stamp is removed
and redone, never trusted):
  sid/       Debian unstable's python3.X and python3.Xd (release and debug, dev headers, the
             release interpreter's debug symbols, which python3.X-dbg ships under
             usr/lib/debug/.build-id) for each X of SID_PYTHONS, and its gdb: resolved and
             downloaded by apt-get with private sources, lists, cache and an empty status
             (the system's apt state is not touched), `dpkg -x` into this one root, the
             interpreters and gdb patched to run on the root's own loader and libraries.
  py3.13t/   a free-threaded debug CPython built from Debian 13's python3.13 source.
  bin/       gdbN (sid's gdb with PYTHONHOME for its embedded Python, not for the
             inferior) and links to every interpreter.
  include/   only the multiarch x86_64-linux-gnu/python3.X*/ pyconfig.h directories of sid's
             interpreters, for extension builds (not sid's libc headers).
  interpreters.json   the manifest tests read (format in write_manifest).
Unstable moves, so nothing is pinned: a group that cannot be had today (a package gone, a
dependency changed, a file not served) is skipped with the reason, which this prints (one
line on later runs) and the manifest keeps; the command still succeeds. `--refresh` drops
every stamp and prepares everything again from today's archive.
"""
import argparse
import concurrent.futures
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

SID_PYTHONS = ("3.14", "3.15")
FT_SOURCE = ("trixie", "python3.13")    # (Debian suite, source package) of the 3.13t build
FT_ID = "3.13t"
FT_UNUSED_MODULES = ("_decimal", "_multibytecodec", "_codecs_cn", "_codecs_hk",
                     "_codecs_iso2022", "_codecs_jp", "_codecs_kr", "_codecs_tw",
                     "_sqlite3", "pyexpat", "_elementtree", "_curses", "_curses_panel",
                     "_dbm", "_gdbm", "_tkinter", "readline", "_lzma", "_bz2", "_ssl",
                     "_hashlib", "xxsubtype", "xxlimited", "xxlimited_35")
MANIFEST_FORMAT = 1
SYSTEM_GDB = "/usr/bin/gdb"
NPROC = os.cpu_count() or 1


class Skip(Exception):
    """A part (or one group of it) cannot be had; the message is the reason."""


def say(msg):
    print("make interpreters: " + msg, flush=True)


class Log:
    """Appends each command's output to one file; a failure's reason is its last line."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        os.makedirs(os.path.dirname(path), exist_ok=True)

    def run(self, cmd, what, cwd=None, env=None):
        t0 = time.time()
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, errors="replace")
        with self.lock, open(self.path, "a") as f:    # parts run in parallel: one write each
            f.write("\n$ %s\n%s[exit %d, %.1f s, %s]\n" % (
                " ".join(cmd), p.stdout, p.returncode, time.time() - t0,
                time.strftime("%H:%M:%S")))
        if p.returncode != 0:
            lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
            errs = [ln for ln in lines if ln.startswith("E:")]
            last = (errs or lines or ["exit status %d" % p.returncode])[-1].strip()
            raise Skip("%s failed: %s (log: %s)" % (what, last[:300], self.path))
        return p.stdout


def debian_mirror():
    """The machine's usual Debian mirror: the first non-security Debian URI of its apt
    sources (PYREF_DEBIAN_MIRROR overrides), else deb.debian.org."""
    env = os.environ.get("PYREF_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    texts = []
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*")):
        if path.endswith((".list", ".sources")):
            try:
                with open(path) as f:
                    texts.append(f.read())
            except OSError:
                pass
    for uri in re.findall(r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+)", "\n".join(texts),
                          re.M):
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    return "http://deb.debian.org/debian"


class PrivateApt:
    """apt-get on private sources, lists, cache and an empty dpkg status: it resolves as if
    nothing were installed and never touches the system's apt state."""

    def __init__(self, state, source_line, log):
        self.state, self.log = state, log
        for d in ("lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(state, d), exist_ok=True)
        self.sources = os.path.join(state, "sources.list")
        self.status = os.path.join(state, "status")
        with open(self.sources, "w") as f:
            f.write(source_line + "\n")
        open(self.status, "w").close()
        self.archives = os.path.join(state, "cache", "archives")

    def opts(self):
        o = {"Dir::Etc::sourcelist": self.sources, "Dir::Etc::sourceparts": "-",
             "Dir::State::Lists": os.path.join(self.state, "lists"),
             "Dir::Cache": os.path.join(self.state, "cache"),
             "Dir::State::status": self.status, "APT::Install-Recommends": "false",
             "Debug::NoLocking": "1"}
        if os.geteuid() == 0:   # root: no '_apt cannot access' warning for a private dir
            o["APT::Sandbox::User"] = "root"
        return [a for k, v in o.items() for a in ("-o", "%s=%s" % (k, v))]

    def run(self, args, what, cwd=None):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
        return self.log.run(["apt-get", "-q"] + self.opts() + args, what, cwd=cwd, env=env)

    def update(self, what):
        self.run(["update"], "apt-get update (%s)" % what)

    def resolve(self, packages):
        """The .deb names that installing `packages` on an empty system takes (apt's
        simulation: every package, whether or not its .deb is already downloaded)."""
        what = "resolving %s" % " ".join(packages)
        out = self.run(["install", "-y", "-s"] + packages, what)
        names = ["%s_%s_%s.deb" % (p, v.replace(":", "%3a"), a) for p, v, a in re.findall(
            r"^Inst (\S+) \((\S+) [^[]*\[([^]]+)\]", out, re.M)]
        if not names:
            raise Skip("%s: apt would install nothing" % what)
        return names

    def fetch(self, packages):
        """Resolves `packages` with their dependencies and downloads them; returns the
        .deb paths."""
        names = self.resolve(packages)
        self.run(["install", "-y", "--download-only"] + packages,
                 "downloading %s" % " ".join(packages))
        debs = [os.path.join(self.archives, n) for n in names]
        missing = [os.path.basename(d) for d in debs if not os.path.exists(d)]
        if missing:
            raise Skip("apt did not fetch %s" % ", ".join(missing[:3]))
        return debs


def elf_build_id(path):
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
    m = re.search(r"Build ID:\s*([0-9a-f]+)", out)
    return m.group(1) if m else None


def load_segments(path):
    """(is a position-dependent program, [(vaddr, memsz)] of the PT_LOAD segments in vaddr
    order)."""
    out = subprocess.run(["readelf", "-hlW", path], capture_output=True, text=True).stdout
    segs = re.findall(r"^\s*LOAD\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s+\S+\s+\S+\s+(0x[0-9a-f]+)",
                      out, re.M)
    return (re.search(r"^\s*Type:\s*EXEC", out, re.M) is not None,
            sorted((int(v, 16), int(n, 16)) for v, n in segs))


def segments_disjoint(layout, page=4096):
    """No two segments share a page, and a position-dependent program maps nothing in the
    first 64 KiB (mmap_min_addr)."""
    fixed, segs = layout
    if not segs or (fixed and segs[0][0] < 0x10000):
        return False
    return all((b[0] // page) * page >= -(-(a[0] + a[1]) // page) * page
               for a, b in zip(segs, segs[1:]))


def patch_program(patchelf, prog, loader, libdir, log):
    """Points `prog` at `loader` and `libdir` (DT_RPATH, which also serves the libraries
    it loads). The longer strings need a segment of their own: for a non-PIE program
    patchelf puts it below the first one, two of its pages below, and with pages smaller
    than the new segment the two share a page (the program then crashes at start), so the
    page size grows until the segments are disjoint. Patches a copy, then renames it over
    `prog` (the running patchelf may be `prog`)."""
    copy = prog + ".patching"
    for page in (0x10000, 0x20000, 0x40000, 0x80000, 0x100000):
        shutil.copy2(prog, copy)
        log.run(patchelf + ["--page-size", str(page), "--set-interpreter", loader,
                            "--force-rpath", "--set-rpath", libdir, copy],
                "patchelf " + os.path.basename(prog))
        if segments_disjoint(load_segments(copy)):
            os.replace(copy, prog)
            return
    os.unlink(copy)
    raise Skip("patchelf left overlapping segments in %s at every page size" % prog)


def rm(path):
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# Debian unstable: python3.X (release, debug, dev) and gdb in one extracted root
# ---------------------------------------------------------------------------------------
def sid_groups():
    """(id, packages) resolved on their own, so that one group gone from unstable skips
    only its own interpreters."""
    groups = [(v, ["python%s-dbg" % v, "python%s-dev" % v, "libpython%s-dev" % v])
              for v in SID_PYTHONS]
    # patchelf 0.18 (0.14, Debian 12's, leaves .dynstr outside every segment, which gdb
    # reports on each load), run from the root by its loader
    return groups + [("gdb", ["gdb"]), ("patchelf", ["patchelf"])]


# The programs of each group that run from the root (the others stay as extracted).
SID_PROGRAMS = dict({v: ["python" + v, "python%sd" % v] for v in SID_PYTHONS}, gdb=["gdb"])


def prepare_sid(cache, log):
    """Returns the stamp: {"mirror", "groups": [prepared group], "skipped": {group:
    reason}, "debs": [the .deb files extracted]}."""
    root = os.path.join(cache, "sid")
    new = root + ".new"
    rm(new)
    rm(root)
    mirror = debian_mirror()
    apt = PrivateApt(os.path.join(cache, "apt", "sid"), "deb %s sid main" % mirror, log)
    say("downloading Debian unstable's python%s and gdb from %s (~260 MB) into %s"
        % (", python".join(SID_PYTHONS), mirror, root))
    apt.update("Debian unstable at %s" % mirror)
    groups, skipped = dict(sid_groups()), {}
    try:                # one resolution for all; group by group only when that fails
        debs = apt.fetch([p for ps in groups.values() for p in ps])
    except Skip:
        debs = set()
        for gid, packages in groups.items():
            try:
                debs.update(apt.fetch(packages))
            except Skip as e:
                skipped[gid] = str(e)
    done = {g for g in groups if g not in skipped}
    debs = sorted(debs)
    os.makedirs(new)
    # dpkg -x of every .deb into the one root; the packages share directories, never files
    with concurrent.futures.ThreadPoolExecutor(NPROC) as pool:
        results = list(pool.map(lambda d: subprocess.run(
            ["dpkg-deb", "-x", d, new], capture_output=True, text=True), debs))
    bad = [(d, r) for d, r in zip(debs, results) if r.returncode != 0]
    if bad:
        d, r = bad[0]
        raise Skip("dpkg-deb -x %s failed: %s"
                   % (os.path.basename(d), r.stderr.strip()[-300:]))
    libdir = os.path.join(root, "usr", "lib", "x86_64-linux-gnu")
    loader = os.path.join(libdir, "ld-linux-x86-64.so.2")
    if not os.path.exists(os.path.join(new, os.path.relpath(loader, root))):
        raise Skip("no ld-linux-x86-64.so.2 in the extracted packages (libc6 not resolved?)")
    bindir = os.path.join(new, "usr", "bin")
    new_loader = os.path.join(new, os.path.relpath(loader, root))
    new_libdir = os.path.join(new, os.path.relpath(libdir, root))
    if "patchelf" in done:
        patchelf = [new_loader, "--library-path", new_libdir, os.path.join(bindir, "patchelf")]
    elif shutil.which("patchelf"):
        say("using the system's patchelf: %s" % skipped.pop("patchelf"))
        patchelf = ["patchelf"]
    else:
        raise Skip("no patchelf: %s" % skipped["patchelf"])
    for gid in sorted(done):
        for name in SID_PROGRAMS.get(gid, ()):
            try:
                patch_program(patchelf, os.path.join(bindir, name), loader, libdir, log)
            except Skip as e:
                skipped[gid] = str(e)
    done -= set(skipped)
    for a in glob.glob(os.path.join(new, "usr", "lib", "**", "*.a"), recursive=True):
        os.unlink(a)    # static libraries, for embedding or sid's own toolchain: 230 MB
    os.rename(new, root)
    for d in glob.glob(os.path.join(apt.archives, "*.deb")):
        os.unlink(d)    # extracted; a redo downloads again (seconds)
    return {"mirror": mirror, "skipped": skipped, "groups": sorted(done),
            "debs": [os.path.basename(d) for d in debs]}


# ---------------------------------------------------------------------------------------
# Free-threaded debug 3.13 from Debian 13's source
# ---------------------------------------------------------------------------------------
def prepare_ft(cache, log):
    suite, source = FT_SOURCE
    prefix = os.path.join(cache, "py" + FT_ID)
    build = os.path.join(cache, "build", "py" + FT_ID)
    rm(prefix)
    rm(build)
    srcdir = os.path.join(cache, "src")
    os.makedirs(srcdir, exist_ok=True)
    tarballs = glob.glob(os.path.join(srcdir, "%s_*.orig.tar.*" % source))
    if not tarballs:
        mirror = debian_mirror()
        apt = PrivateApt(os.path.join(cache, "apt", suite + "-src"),
                         "deb-src %s %s main" % (mirror, suite), log)
        apt.update("Debian %s sources at %s" % (suite, mirror))
        try:
            apt.run(["source", "--tar-only", source], "apt-get source --tar-only " + source,
                    cwd=srcdir)
        except Skip:
            pass            # the .debian.tar may not be served; the upstream one suffices
        tarballs = glob.glob(os.path.join(srcdir, "%s_*.orig.tar.*" % source))
        for f in os.listdir(srcdir):
            if not re.match(r"%s_.*\.orig\.tar\." % re.escape(source), f):
                rm(os.path.join(srcdir, f))
        if not tarballs:
            raise Skip("apt-get source --tar-only %s (Debian %s) gave no upstream tarball "
                       "(log: %s)" % (source, suite, log.path))
    tarball = sorted(tarballs)[-1]
    version = re.search(r"_([^_]+)\.orig\.tar", tarball).group(1)
    say("building a free-threaded debug CPython %s (Debian %s's %s) into %s (~3 min)"
        % (version, suite, source, prefix))
    os.makedirs(build)
    log.run(["tar", "-xf", tarball, "-C", build, "--strip-components=1"],
            "unpacking " + tarball)
    # Minimal, for `make deps` time on a fresh machine: no pip, no test modules, none of
    # the stdlib extensions the tests never import (configure's documented
    # py_cv_module_NAME=n/a); ctypes (libffi) and zlib, which they do, are checked below.
    # Byte-code is compiled on import, not by altinstall for three optimization levels
    # (compileall -l: the top level of Lib only).
    log.run(["./configure", "--prefix=" + prefix, "--disable-gil", "--with-pydebug",
             "--without-ensurepip", "--disable-test-modules"]
            + ["py_cv_module_%s=n/a" % m for m in FT_UNUSED_MODULES], "configure", cwd=build)
    log.run(["make", "-j%d" % NPROC], "make", cwd=build)
    log.run(["make", "altinstall", "COMPILEALL_OPTS=-l"], "make altinstall", cwd=build)
    exe = ft_executable(prefix)
    if not exe:
        raise Skip("make altinstall left no python3.*t in %s/bin" % prefix)
    log.run([exe, "-c", "import ctypes, zlib, sys; assert not sys._is_gil_enabled()"],
            "checking ctypes, zlib and the disabled GIL of " + exe)
    gdbpy = os.path.join(build, "python-gdb.py")
    if os.path.exists(gdbpy):   # beside nothing gdb auto-loads: tests source it by name
        os.makedirs(os.path.join(prefix, "share", "gdb"), exist_ok=True)
        shutil.copy(gdbpy, ft_gdb_script(prefix, exe))
    for a in glob.glob(os.path.join(prefix, "lib", "**", "*.a"), recursive=True):
        os.unlink(a)    # libpython for embedding: 60 MB
    rm(build)
    rm(os.path.dirname(build))
    return {"source": "Debian %s %s %s" % (suite, source, version)}


def ft_gdb_script(prefix, exe):
    return os.path.join(prefix, "share", "gdb", os.path.basename(exe) + "-gdb.py")


def ft_executable(prefix):
    hits = [h for h in glob.glob(os.path.join(prefix, "bin", "python3.*t*"))
            if re.search(r"/python3\.\d+td?$", h)]
    return hits[0] if hits else None


# ---------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------
PROBE = r"""
import json, sys, sysconfig
print(json.dumps({
    "version": "%d.%d.%d%s" % (sys.version_info[:3] + (
        "" if sys.version_info.releaselevel == "final" else
        sys.version_info.releaselevel[0] + str(sys.version_info.serial),)),
    "debug": hasattr(sys, "gettotalrefcount"),
    "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    "multiarch": sysconfig.get_config_var("MULTIARCH") or "",
}))
"""


def probe(exe):
    p = subprocess.run([exe, "-c", PROBE], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise Skip("%s does not run: %s" % (exe, (p.stderr.strip().splitlines() or ["?"])[-1]))
    return json.loads(p.stdout)


def gdb_version(cmd, env=None):
    """(version string, major) of a gdb whose embedded Python runs."""
    p = subprocess.run(cmd + ["-nx", "-batch", "-ex", "python print(gdb.VERSION)"],
                       capture_output=True, text=True, timeout=60, env=env)
    m = re.match(r"(\d+)\.(\d+)", p.stdout.strip())
    if p.returncode != 0 or not m:
        raise Skip("%s does not run its Python: %s"
                   % (cmd[0], (p.stderr.strip().splitlines() or ["?"])[-1]))
    return p.stdout.strip().splitlines()[-1], int(m.group(1))


GDB_WRAPPER = """#!/bin/sh
# GDB %(version)s from Debian unstable, run from the root it was extracted into
# (tools/interpreters.py): its embedded Python needs PYTHONHOME=%(root)s/usr, which the
# inferior must not inherit; separate debug symbols are looked for in that root first.
if [ -n "${PYTHONHOME+set}" ]; then
    keep="set environment PYTHONHOME=$PYTHONHOME"
else
    keep="unset environment PYTHONHOME"
fi
# The system's libthread_db (for the system's programs; Debian 12's gdb loads it from its
# own library path, this one must be told it is safe).
PYTHONHOME=%(root)s/usr exec %(root)s/usr/bin/gdb -iex "$keep" \\
    -iex "set debug-file-directory %(root)s/usr/lib/debug:/usr/lib/debug" \\
    -iex "add-auto-load-safe-path /lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu" "$@"
"""


def deb_version(sid, package):
    """'package version' as the sid stamp recorded it."""
    for name in sid["debs"]:
        if name.startswith(package + "_"):
            return "%s %s" % (package, name.split("_")[1].replace("%3a", ":"))
    return package


def link(target, name):
    rm(name)
    os.symlink(target, name)


def write_manifest(cache, stamps):
    """interpreters.json:
      {"format": 1, "cache": DIR,
       "interpreters": {ID: {"executable", "version", "debug", "free_threaded",
                             "cflags": [extra compiler flags for an extension],
                             "gdb_init": [gdb commands before loading a program or core],
                             "gdb_script": the interpreter's own -gdb.py or null,
                             "debug_symbols": separate debug file or null (in the binary),
                             "source": where it came from}},
       "debuggers": {"gdb13": {"path", "version"}, "gdbN": {...}},
       "skipped": {ID: reason}}
    IDs: 3.X (release), 3.Xd (debug), 3.13t (free-threaded debug)."""
    interps, debuggers, skipped = {}, {}, {}
    bindir, incdir = os.path.join(cache, "bin"), os.path.join(cache, "include")
    rm(bindir)
    rm(incdir)
    os.makedirs(bindir)
    os.makedirs(incdir)
    try:
        debuggers["gdb13"] = {"path": SYSTEM_GDB, "version": gdb_version([SYSTEM_GDB])[0]}
    except (Skip, OSError) as e:
        skipped["gdb13"] = str(e)

    sid = stamps.get("sid")
    root = os.path.join(cache, "sid")
    sid_reason = stamps.get("sid_skipped")
    for v in SID_PYTHONS:
        for ident, exe_name in ((v, "python" + v), (v + "d", "python%sd" % v)):
            reason = sid_reason or (sid["skipped"].get(v) if sid else None)
            if reason:
                skipped[ident] = reason
                continue
            exe = os.path.join(root, "usr", "bin", exe_name)
            try:
                info = probe(exe)
            except (Skip, OSError) as e:
                skipped[ident] = str(e)
                continue
            if info["multiarch"]:
                sub = os.path.join(incdir, info["multiarch"])
                os.makedirs(sub, exist_ok=True)
                for d in glob.glob(os.path.join(root, "usr", "include", info["multiarch"],
                                                "python%s*" % v)):
                    link(d, os.path.join(sub, os.path.basename(d)))
            dbg = os.path.join(root, "usr", "lib", "debug")
            bid = elf_build_id(exe)
            symfile = bid and os.path.join(dbg, ".build-id", bid[:2], bid[2:] + ".debug")
            script = os.path.join(root, "usr", "share", "gdb", "auto-load", "usr", "bin",
                                  exe_name + "-gdb.py")
            link(exe, os.path.join(bindir, exe_name))
            interps[ident] = {
                "executable": exe, "version": info["version"], "debug": info["debug"],
                "free_threaded": info["free_threaded"], "cflags": ["-I" + incdir],
                # the release interpreter's symbols; the root's libthread_db (GDB 13
                # cannot load it: built for a newer libc; it then says so in one line)
                "gdb_init": ["set debug-file-directory %s:/usr/lib/debug" % dbg,
                             "add-auto-load-safe-path %s/usr/lib/x86_64-linux-gnu" % root],
                "gdb_script": script if os.path.exists(script) else None,
                "debug_symbols": symfile if symfile and os.path.exists(symfile) else None,
                "source": "Debian unstable " + deb_version(sid, "python%s-dbg" % v)}
    if sid_reason or (sid and "gdb" in sid["skipped"]):
        skipped["gdb18"] = sid_reason or sid["skipped"]["gdb"]
    elif sid:
        program = os.path.join(root, "usr", "bin", "gdb")
        try:
            version, major = gdb_version(
                [program], env=dict(os.environ, PYTHONHOME=os.path.join(root, "usr")))
            wrapper = os.path.join(bindir, "gdb%d" % major)
            with open(wrapper, "w") as f:
                f.write(GDB_WRAPPER % {"root": root, "version": version})
            os.chmod(wrapper, 0o755)
            debuggers["gdb%d" % major] = {"path": wrapper, "version": version,
                                          "program": program}
        except (Skip, OSError) as e:
            skipped["gdb18"] = str(e)

    ft = stamps.get("ft")
    if stamps.get("ft_skipped"):
        skipped[FT_ID] = stamps["ft_skipped"]
    elif ft:
        prefix = os.path.join(cache, "py" + FT_ID)
        exe = ft_executable(prefix)
        try:
            info = probe(exe) if exe else None
            if not info:
                raise Skip("no python3.*t in %s/bin" % prefix)
            script = ft_gdb_script(prefix, exe)
            for name in {os.path.basename(exe), "python" + FT_ID}:
                link(exe, os.path.join(bindir, name))
            interps[FT_ID] = {
                "executable": exe, "version": info["version"], "debug": info["debug"],
                "free_threaded": info["free_threaded"], "cflags": [], "gdb_init": [],
                "gdb_script": script if os.path.exists(script) else None,
                "debug_symbols": None, "source": ft["source"]}
        except (Skip, OSError) as e:
            skipped[FT_ID] = str(e)
    write_json(os.path.join(cache, "interpreters.json"), {
        "format": MANIFEST_FORMAT, "cache": cache, "interpreters": interps,
        "debuggers": debuggers, "skipped": skipped})
    return skipped


# ---------------------------------------------------------------------------------------
def part(cache, name, where, prepare, log):
    """Runs one part unless its stamp is there (and its directory `where`): the stamp, or
    the skip reason, is written last, so an interrupted preparation is redone."""
    stamp = os.path.join(cache, name + ".stamp")
    done = read_json(stamp)
    if done is not None and ("skipped" in done or os.path.isdir(os.path.join(cache, where))):
        return done, False
    try:
        result = {"ok": prepare(cache, log)}
    except Skip as e:
        result = {"skipped": str(e)}
    except Exception as e:      # an unexpected failure skips the part too: never fail make
        result = {"skipped": "%s: %s (log: %s)" % (type(e).__name__, e, log.path)}
    write_json(stamp, result)
    return result, True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                           os.path.expanduser("~/.cache"), "pyref")
    ap.add_argument("--cache", default=os.environ.get("PYREF_CACHE") or default)
    ap.add_argument("--refresh", action="store_true",
                    help="drop every stamp and prepare again from today's archive")
    args = ap.parse_args()
    cache = os.path.abspath(args.cache)
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)     # one preparation at a time per cache
        if args.refresh:
            for s in glob.glob(os.path.join(cache, "*.stamp")) + [os.path.join(cache, "src")]:
                rm(s)
        t0 = time.time()
        log = Log(os.path.join(cache, "log", "interpreters.log"))
        stamps, ran = {}, False
        parts = (("sid", "sid", prepare_sid), ("ft", "py" + FT_ID, prepare_ft))
        # In parallel: sid's part is mostly download and unpacking, ft's mostly compiling.
        with concurrent.futures.ThreadPoolExecutor(len(parts)) as pool:
            futures = [pool.submit(part, cache, name, where, prepare, log)
                       for name, where, prepare in parts]
        for (name, _, _), future in zip(parts, futures):
            result, r = future.result()
            ran |= r
            if "ok" in result:
                stamps[name] = result["ok"]
            else:
                stamps[name + "_skipped"] = result["skipped"]
        manifest = os.path.join(cache, "interpreters.json")
        if ran or read_json(manifest) is None:
            skipped = write_manifest(cache, stamps)
            m = read_json(manifest)
            say("ready in %.0f s: %s (%s)" % (time.time() - t0, " ".join(
                sorted(m["interpreters"]) + sorted(m["debuggers"])), manifest))
        else:
            skipped = read_json(manifest)["skipped"]
        if skipped and not ran:
            say("skipped %s (reasons in %s; make interpreters-refresh retries)"
                % (", ".join(sorted(skipped)), manifest))
        elif skipped:
            for reason in sorted(set(skipped.values())):
                say("skipped %s: %s" % (", ".join(
                    sorted(k for k, v in skipped.items() if v == reason)), reason))
    return 0


if __name__ == "__main__":
    sys.exit(main())
