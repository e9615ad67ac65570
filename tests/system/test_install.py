"""`make install` and `make uninstall`, used as a user would: install into a temporary
prefix, build the routes extension with the *installed* pyref-config from a directory
outside the source tree, crash it, and debug the core with the installed GDB extension
(sourced, and auto-loaded next to libpyref.so) and the installed pyref-postmortem. Nothing
installed may refer back to the source tree. DESTDIR staging and uninstall leave nothing."""
import json
import os
import re
import shutil
import subprocess

import pytest

import pyreftest

ROUTES = os.path.join(pyreftest.ROOT, "tests", "ext", "routes")
PYTHON = "/usr/bin/python3.11d"  # has the debug info pyref's GDB side needs
CHURN = 5

FILES = ["bin/pyref-config", "bin/pyref-postmortem",
         "include/pyref/shim/Python.h", "include/pyref/ring.h",
         "lib/libpyref.so", "lib/libpyref.a", "lib/libpyref.so-gdb.py",
         "lib/pkgconfig/pyref.pc",
         "share/pyref/VERSION", "share/pyref/gdbext/pyref-gdb.py",
         "share/pyref/gdbext/pyref/__init__.py", "share/pyref/gdbext/pyref/errors.py",
         "share/pyref/gdbext/pyref/commands/__init__.py",
         "share/pyref/gdbext/pyref/commands/settings.py",
         "share/pyref/gdbext/pyref/reader/decode.py", "share/pyref/gdbext/pyref/rules/verdict.py",
         "share/pyref/gdbext/pyref/inferior/target.py", "share/doc/pyref/README.md"]


def make(*args, **kw):
    p = subprocess.run(["make", "-s", "-C", pyreftest.ROOT] + list(args),
                       capture_output=True, text=True, timeout=300, **kw)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


def gdb(commands, args, loader=None, early=(), cwd=None):
    """gdb -batch -nx, with `loader` sourced when given (else only what auto-loads)."""
    cmd = pyreftest.gdb_command(commands, args, load_pyref=bool(loader), early=early,
                                loader=loader)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)
    out = p.stdout + p.stderr
    assert "Python Exception" not in out, out
    return out


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    root = tmp_path_factory.mktemp("inst") / "pyref"
    make("install", "PREFIX=%s" % root)
    return root


@pytest.fixture(scope="module")
def crashed(prefix, tmp_path_factory):
    """The routes extension built with the installed pyref-config, in a directory outside
    the source tree, then crashed: (workdir, core, object address)."""
    work = tmp_path_factory.mktemp("user")
    shutil.copytree(ROUTES, work / "routes")
    cfg = str(prefix / "bin" / "pyref-config")
    suffix = subprocess.check_output(
        [PYTHON, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        text=True).strip()
    cflags = subprocess.check_output([cfg, "--python", PYTHON, "--cflags"], text=True).split()
    libs = subprocess.check_output([cfg, "--libs"], text=True).split()
    subprocess.run(["gcc", "-g", "-O1", "-fPIC", "-shared"] + cflags +
                   ["routes/src/routesext.c"] + libs + ["-o", "routesext" + suffix],
                   cwd=str(work), check=True, capture_output=True, text=True)
    gdbext = str(prefix / "share" / "pyref" / "gdbext")
    p = subprocess.run([PYTHON, "routes/driver.py", ".", gdbext, str(CHURN), "count"],
                       cwd=str(work), capture_output=True, text=True, check=True)
    assert p.stdout.split() == ["libpyref", str(prefix / "lib" / "libpyref.so"),
                                "records", str(2 * CHURN)], p.stdout
    core, proc = pyreftest.run_to_core(PYTHON, ["routes/driver.py", ".", gdbext,
                                                str(CHURN), "abort"], cwd=str(work))
    obj = re.search(r"^obj (0x[0-9a-f]+)$", proc.stdout, re.M).group(1)
    return work, core, obj


def test_layout(prefix):
    have = files_under(prefix)
    assert [f for f in FILES if f not in have] == []
    assert os.access(prefix / "bin" / "pyref-config", os.X_OK)
    assert os.access(prefix / "bin" / "pyref-postmortem", os.X_OK)
    shim = {f for f in os.listdir(os.path.join(pyreftest.ROOT, "c_helpers", "shim"))
            if f.endswith(".h")}
    assert shim <= set(os.listdir(prefix / "include" / "pyref" / "shim"))


def test_nothing_installed_refers_to_the_source_tree(prefix):
    """Text files only: the libraries' debug info names their sources, as it should."""
    for rel in files_under(prefix):
        if rel.endswith((".so", ".a")):
            continue
        with open(prefix / rel, "rb") as f:
            assert pyreftest.ROOT.encode() not in f.read(), rel


def test_installed_pyref_config_points_at_installed_paths(prefix):
    cfg = str(prefix / "bin" / "pyref-config")
    out = lambda *a: subprocess.check_output([cfg] + list(a), text=True).strip()  # noqa: E731
    assert out("--cflags") == "-I%s/include/pyref/shim -I%s/include" % (prefix, prefix)
    assert out("--libs").split()[:2] == ["-L%s/lib" % prefix, "-Wl,-rpath,%s/lib" % prefix]
    assert "-lpyref" in out("--libs").split()
    assert out("--static-libs").split()[0] == "%s/lib/libpyref.a" % prefix
    assert out("--prefix") == str(prefix)
    assert out("--version") == (prefix / "share" / "pyref" / "VERSION").read_text().strip()
    assert out("--python", PYTHON, "--cflags").endswith("-I/usr/include/python3.11d")


def test_pkg_config_agrees_with_pyref_config(prefix):
    if shutil.which("pkg-config") is None:
        pytest.skip("pkg-config not installed (make deps installs pkgconf)")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    pc = lambda *a: subprocess.check_output(["pkg-config"] + list(a) + ["pyref"],  # noqa
                                            text=True, env=env).strip()
    cfg = str(prefix / "bin" / "pyref-config")
    assert pc("--cflags") == subprocess.check_output([cfg, "--cflags"], text=True).strip()
    assert pc("--modversion") == subprocess.check_output([cfg, "--version"], text=True).strip()
    libs = pc("--libs").split()
    assert "-L%s/lib" % prefix in libs and "-lpyref" in libs
    # kept when given before the objects under --as-needed (setuptools' LDFLAGS)
    assert libs.index("-Wl,--push-state,--no-as-needed") < libs.index("-lpyref")


def test_ring_from_a_core_with_the_installed_loader(prefix, crashed):
    work, core, obj = crashed
    loader = str(prefix / "share" / "pyref" / "gdbext" / "pyref-gdb.py")
    out = gdb(["python import pyref; print('pyref from', pyref.__file__)", "pyref ring",
               "pyref history %s" % obj], [PYTHON, core], loader=loader, cwd=str(work))
    assert "pyref from %s/" % (prefix / "share" / "pyref" / "gdbext" / "pyref") in out, out
    written = int(re.search(r"^\s+written\s+(\d+)", out, re.M).group(1))
    assert written >= 2 * CHURN, out
    # the churn's INCREF/DECREF pairs (the C-API wrappers may add a BORROW of the argument)
    assert re.search(r"\d+ transitions of %s" % obj, out), out
    assert len(re.findall(r"(?:INCREF|DECREF)\s.*routesext\.c:", out)) == 2 * CHURN, out


def test_auto_load_next_to_libpyref(prefix, crashed):
    """libpyref.so-gdb.py loads pyref when the core maps PREFIX/lib/libpyref.so, once the
    directory is in auto-load safe-path; before that GDB declines it and says why."""
    work, core, obj = crashed
    lib = str(prefix / "lib")
    out = gdb(["pyref ring"], [PYTHON, core], early=["add-auto-load-safe-path " + lib],
              cwd=str(work))
    assert re.search(r"^\s+written\s+\d+", out, re.M), out
    declined = gdb(["pyref ring"], [PYTHON, core], early=["set auto-load safe-path /nowhere"],
                   cwd=str(work))
    assert "libpyref.so-gdb.py" in declined and "auto-load" in declined, declined
    assert 'Undefined command: "pyref"' in declined, declined


def test_installed_postmortem(prefix, crashed):
    work, core, _ = crashed
    pm = str(prefix / "bin" / "pyref-postmortem")
    p = subprocess.run([pm, "--json", PYTHON, core], capture_output=True, text=True,
                       timeout=300, cwd=str(work))
    assert "Python Exception" not in p.stdout + p.stderr, p.stdout + p.stderr
    report = json.loads(p.stdout)
    version = (prefix / "share" / "pyref" / "VERSION").read_text().strip()
    assert report["pyref_version"] == version


def test_uninstall_leaves_nothing(tmp_path):
    root = tmp_path / "p"
    make("install", "PREFIX=%s" % root)
    assert files_under(root)
    make("uninstall", "PREFIX=%s" % root)
    assert files_under(root) == []


def test_destdir_staging(tmp_path):
    stage = tmp_path / "stage"
    make("install", "PREFIX=/opt/pyref", "DESTDIR=%s" % stage)
    have = files_under(stage)
    assert [f for f in FILES if "opt/pyref/" + f not in have] == []
    pc = (stage / "opt" / "pyref" / "lib" / "pkgconfig" / "pyref.pc").read_text()
    assert "prefix=/opt/pyref\n" in pc
    make("uninstall", "PREFIX=/opt/pyref", "DESTDIR=%s" % stage)
    assert files_under(stage) == []


def test_relative_prefix_is_refused(tmp_path):
    p = subprocess.run(["make", "-s", "-C", pyreftest.ROOT, "install", "PREFIX=relative/dir",
                        "DESTDIR=%s" % tmp_path], capture_output=True, text=True)
    assert p.returncode != 0 and "PREFIX must be an absolute path" in p.stderr
    assert files_under(tmp_path) == []
