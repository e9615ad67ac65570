"""`pyref-config` for a new user: `--check EXT.so` says from the ELF file alone whether a
build records, and why not (reader/extcheck.py), on real builds of each mistake; the
include-order trap is named by `pyref why` and `pyref history` on a real core too; a
missing runtime, a missing interpreter and a missing `--libs` each get one clear line."""
import os
import shutil
import subprocess
import sys

import pytest

import pyreftest

SRC = pyreftest.ROUTES_SRC
PYTHON = "/usr/bin/python3.11d"


def config(*args, exe=pyreftest.PYREF_CONFIG):
    return subprocess.run([exe] + list(args), capture_output=True, text=True, timeout=60)


def flags(*args):
    p = config(*args)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def include_dir(python):
    return subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
        text=True).strip()


def build_cmd(tmp_path, name, cflags, libs, python=PYTHON):
    """(gcc command, output) building routesext with `cflags` before the source and `libs`
    after it."""
    d = tmp_path / name
    d.mkdir()
    suffix = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        text=True).strip()
    out = str(d / ("routesext" + suffix))
    return ["gcc", "-g", "-O1", "-fPIC", "-shared"] + cflags + [SRC] + libs + ["-o", out], out


def build(tmp_path, name, cflags, libs, python=PYTHON):
    cmd, out = build_cmd(tmp_path, name, cflags, libs, python)
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, " ".join(cmd) + "\n" + p.stderr
    return out


# libpyref linked without pyref-config: what --libs gives, less its check of the shim
HAND_LIBS = ["-L" + pyreftest.BUILD, "-Wl,-rpath," + pyreftest.BUILD,
             "-Wl,--no-as-needed", "-lpyref"]
MARKER = "pyref__Python_h_shim_not_compiled__put_pyref_config_cflags_before_other_include_flags"


@pytest.mark.parametrize("libs", ["--libs", "--static-libs"])
def test_libs_refuse_a_module_compiled_without_the_shim(libs, tmp_path):
    """The include-order trap fails the link: with the interpreter's -I first (or no
    --cflags at all) the linker names the marker the shim defines, and its name says
    what to do; the same flags in the right order link."""
    cflags = flags("--python", PYTHON, "--cflags")
    py_inc = ["-I" + include_dir(PYTHON)]
    for name, cf in (("after", py_inc + cflags), ("none", py_inc)):
        cmd, out = build_cmd(tmp_path, name, cf, flags(libs))
        p = subprocess.run(cmd, capture_output=True, text=True)
        assert p.returncode != 0 and not os.path.exists(out), (name, p.stderr)
        assert "required symbol `%s' not defined" % MARKER in p.stderr, (name, p.stderr)
    build(tmp_path, "right", cflags + py_inc, flags(libs))   # shim first: links


def test_python_h_before_the_shim_is_an_error(tmp_path):
    """A unit that included the interpreter's Python.h before reaching the shim (its code
    so far untraced) does not compile, and the message says what to do."""
    src = tmp_path / "late.c"
    src.write_text('#include "%s/Python.h"\n#include <Python.h>\nint x;\n' % include_dir(PYTHON))
    p = subprocess.run(["gcc", "-c", "-o", str(tmp_path / "late.o")] +
                       flags("--python", PYTHON, "--cflags") + [str(src)],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert "the interpreter's Python.h was included before pyref's shim" in p.stderr
    assert "$(pyref-config --cflags) before every other -I" in p.stderr


@pytest.fixture(scope="module", autouse=True)
def runtime():
    pyreftest.ensure_runtime()


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Each way a build can go, as a user would make it."""
    tmp = tmp_path_factory.mktemp("check")
    cflags = flags("--python", PYTHON, "--cflags")
    py_inc = ["-I" + include_dir(PYTHON)]
    return {
        "traced": build(tmp, "traced", cflags, flags("--libs")),
        "static": build(tmp, "static", cflags, flags("--static-libs")),
        # meson's natural order, the interpreter's -I before the shim's, linked by hand
        # (`--libs` refuses it: test_libs_refuse_a_module_compiled_without_the_shim)
        "shim-after-python": build(tmp, "after", py_inc + cflags, HAND_LIBS),
        "no-libs": build(tmp, "nolibs", cflags, []),
        "untraced": build(tmp, "untraced", py_inc, []),
    }


def test_check_each_build(builds):
    sites = subprocess.run(["gcc", "-E"] + flags("--python", PYTHON, "--cflags") + [SRC],
                           capture_output=True, text=True).stdout.count("pyref__site_ = {")
    assert sites > 0
    expect = {
        "traced": (0, "traced: %d call sites recorded into the ring of %s"
                   % (sites, os.path.join(pyreftest.BUILD, "libpyref.so"))),
        "static": (0, "traced: %d call sites recorded; the runtime is linked in "
                      "(--static-libs): this module has a ring of its own" % sites),
        "shim-after-python": (1, "NOT traced: links pyref's runtime but nothing in it "
                                 "records: the compiler read the interpreter's Python.h, "
                                 "not pyref's shim, so the ring stays empty; put "
                                 "$(pyref-config --cflags) before every other -I"),
        "no-libs": (1, "NOT traced: uses pyref's runtime but is not linked with it: the "
                       "import fails with \"undefined symbol: pyref_tls_"),
        "untraced": (1, "NOT traced: no trace of pyref: built without pyref-config's flags "
                        "(--cflags when compiling, --libs when linking)"),
    }
    for name, (code, text) in expect.items():
        p = config("--check", builds[name])
        assert p.returncode == code, (name, p.stdout, p.stderr)
        assert p.stdout.startswith("%s: %s" % (builds[name], text)), (name, p.stdout)
        assert p.stdout.count("\n") == 1 and p.stderr == "", (name, p.stdout, p.stderr)
    # several at once: one line each, and the worst exit code
    p = config("--check", builds["traced"], builds["no-libs"])
    assert p.returncode == 1 and p.stdout.count("\n") == 2


def test_missing_libs_is_what_the_import_says(builds):
    """The import of a build without --libs fails with the symbol --check names."""
    p = subprocess.run([PYTHON, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "import routesext", os.path.dirname(builds["no-libs"])],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "undefined symbol: pyref_" in p.stderr, p.stderr
    symbol = p.stderr.split("undefined symbol: ")[1].split()[0]
    check = config("--check", builds["no-libs"]).stdout
    assert "add $(pyref-config --libs) to the link line" in check
    assert symbol in check.split("undefined symbol: ")[1].split(";")[0], (symbol, check)


def test_check_refuses_what_is_no_module(tmp_path):
    p = config("--check", str(tmp_path / "none.so"))
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == "pyref-config: %s: No such file or directory\n" % (tmp_path / "none.so")
    text = tmp_path / "text.so"
    text.write_text("not an ELF file at all, but long enough to have a header......\n")
    p = config("--check", str(text))
    assert p.returncode == 2
    assert p.stderr.startswith("pyref-config: %s: not an ELF64 shared object" % text)
    p = config("--check")
    assert p.returncode == 2 and p.stderr == \
        "pyref-config: --check needs an extension module (EXT.so)\n"


def test_include_order_trap_named_by_the_report(builds, tmp_path):
    """A module that links libpyref but was compiled against the interpreter's Python.h:
    its ring stays empty, and the first report says why instead of 'no recorded
    history'."""
    moddir = os.path.dirname(builds["shim-after-python"])
    core, proc = pyreftest.run_to_core(PYTHON, pyreftest.routes_driver_args(moddir),
                                       cwd=str(tmp_path))
    obj = proc.stdout.split("obj ")[1].split()[0]
    out = pyreftest.gdb_batch(["pyref ring", "pyref history " + obj, "pyref why " + obj],
                              args=[PYTHON, core])
    name = os.path.basename(builds["shim-after-python"])
    note = ("the ring is empty: %s links libpyref.so but records nothing: the shim was not "
            "first on the include path, so the interpreter's Python.h was compiled in "
            "(`pyref-config --check FILE` says more)" % name)
    assert "warning: " + note in out, out
    assert "no transitions of %s in the ring\n(%s)\n" % (obj, note) in out, out
    assert "missing:  " + note in out, out


def test_runtime_not_built(tmp_path):
    """pyref-config copied into a source tree without build/: --libs and --static-libs
    fail, with the cause, and print no flags."""
    root = tmp_path / "pyref"
    (root / "bin").mkdir(parents=True)
    (root / "c_helpers" / "shim").mkdir(parents=True)
    exe = str(root / "bin" / "pyref-config")
    shutil.copy(pyreftest.PYREF_CONFIG, exe)
    for opt, lib in (("--libs", "libpyref.so"), ("--static-libs", "libpyref.a")):
        p = config(opt, exe=exe)
        assert p.returncode == 1 and p.stdout == ""
        assert p.stderr == "pyref-config: %s/build/%s is not built: run make in %s first\n" \
            % (root, lib, root), p.stderr


def test_missing_interpreter():
    p = config("--python", "python3.99", "--cflags")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == "pyref-config: --python python3.99: no such interpreter on PATH\n"
    p = config("--python", sys.executable, "--cflags")
    assert p.returncode == 0 and "-I" + include_dir(sys.executable) in p.stdout
