"""The interpreters and GDB that `make interpreters` prepares (tools/interpreters.py), used
the way the other suites use them: for each, an untraced extension (tests/ext/
interp_probe_ext.c) built by build_ext with the manifest's flags, run, crashed into a real
core, and the core read by GDB 13 and GDB 18 with the manifest's gdb init commands: a
PyObject field from DWARF, the interpreter's own frame type (its debug symbols), its own
-gdb.py's py-bt, and pyref's loader with `pyref show`."""
import os
import re

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "interp_probe_ext.c")
NEW = ("3.13t", "3.14", "3.14d", "3.15", "3.15d")
DRIVER = """
import sys, interp_probe_ext
interp_probe_ext.hold(["probe", 42])
print("none-refcount", sys.getrefcount(None))
def inner():
    interp_probe_ext.crash()
def outer():
    inner()
outer()
"""
# sys.getrefcount(None): the immortal count each version's headers define
# (_Py_IMMORTAL_INITIAL_REFCNT = 3 << 30 on 3.14+; _Py_IMMORTAL_REFCNT = UINT_MAX on 3.13t).
NONE_REFCOUNT = {"3.13t": 2 ** 32 - 1, "3.14": 3 << 30, "3.14d": 3 << 30, "3.15": 3 << 30,
                 "3.15d": 3 << 30}


def ident_of(python):
    return next(i for i, info in pyreftest.manifest()["interpreters"].items()
                if info["executable"] == python)


@pytest.fixture(scope="module", params=pyreftest.interpreters(NEW))
def crashed(request, tmp_path_factory):
    """(id, executable, core, stdout) of the driver crashed on one interpreter."""
    python = request.param
    d = str(tmp_path_factory.mktemp("interp"))
    pyreftest.build_ext(SRC, python, d, traced=False)
    core, p = pyreftest.run_to_core(python, ["-c", DRIVER], cwd=d, env={"PYTHONPATH": d})
    return ident_of(python), python, core, p.stdout


def sections(out):
    """{marker: text} from '@@ marker' lines."""
    parts = re.split(r"^@@ (\w+)$", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_manifest_entry_is_the_interpreter(crashed):
    ident, python, _, stdout = crashed
    info = pyreftest.interpreter_info(python)
    assert info["version"].startswith(ident.rstrip("dt") + ".")
    assert info["debug"] == (ident.endswith("d") or ident == "3.13t")
    assert info["free_threaded"] == ident.endswith("t")
    if not info["debug"]:     # a release build's symbols are a separate file, by build-id
        assert info["debug_symbols"] and os.path.exists(info["debug_symbols"])
    assert "none-refcount %d" % NONE_REFCOUNT[ident] in stdout


@pytest.mark.parametrize("gdb", pyreftest.gdbs())
def test_gdb_reads_the_core(crashed, gdb):
    ident, python, core, _ = crashed
    info = pyreftest.interpreter_info(python)
    cmds = ["echo @@ field\\n", "print interp_probe_held->ob_type->tp_name",
            "echo @@ frame\\n", "ptype struct _PyInterpreterFrame",
            "echo @@ show\\n", "pyref show interp_probe_held"]
    if info["gdb_script"]:
        cmds += ["source " + info["gdb_script"], "echo @@ pybt\\n", "py-bt"]
    cmds += ["echo @@ end\\n"]
    out = pyreftest.gdb_batch(cmds, args=[python, core], gdb=gdb)
    assert "Python Exception" not in out, out
    s = sections(out)
    assert '"list"' in s["field"], out
    assert re.search(r"\*previous;", s["frame"]), out          # the interpreter's own DWARF
    assert re.search(r"^type:\s+list\b", s["show"], re.M), out   # pyref loaded, read it
    if info["gdb_script"]:
        frames = re.findall(r'File "<string>", line \d+, in (\w+)', s["pybt"])
        if frames or info["debug"] or gdb != "/usr/bin/gdb":
            assert frames[:2] == ["inner", "outer"], out
        else:
            # GDB 13 cannot load unstable's libthread_db (built for a newer libc), so no
            # thread-local thread state, and a release build's frame is optimized out
            assert "unable to read python frame information" in s["pybt"], out


def test_gdb18_keeps_its_python_home_from_the_inferior():
    gdb18 = pyreftest.gdbs()[1]
    if gdb18.marks:
        pytest.skip(gdb18.marks[0].kwargs["reason"])
    found = [pyreftest.interpreter(i) for i in NEW if i != "3.13t"]
    python = next((exe for exe, _ in found if exe), None)
    if not python:
        pytest.skip("; ".join(reason for _, reason in found))
    out = pyreftest.gdb_batch(
        ["python import sys; print('@@ gdb python', *sys.version_info[:2])", "run"],
        args=["--args", python, "-c", "import os; print('@@ home', os.environ.get("
              "'PYTHONHOME'))"], gdb=gdb18.values[0], load_pyref=False)
    assert re.search(r"^@@ gdb python 3 \d+$", out, re.M), out
    assert "@@ home None" in out, out


OWNED_AND_BORROWED = """
import os
def g(y):
    with open(os.path.join(%r, "addr"), "w") as f:
        f.write(hex(id(y)))
    os.abort()
def f():
    x = ["held"]
    g(x)
f()
"""


@pytest.mark.parametrize("python", pyreftest.interpreters(("3.13", "3.14", "3.14d", "3.15",
                                                           "3.15d")))
def test_owners_of_a_frame_local_and_a_borrowed_stack_ref(python, tmp_path):
    """f's local x owns the list; 3.14+ passes it to g as a borrowed _PyStackRef (tagged
    Py_TAG_REFCNT: LOAD_FAST_BORROW), shown and not counted; 3.13 holds a strong pointer
    in g's local y. The account balances either way."""
    d = str(tmp_path)
    out = pyreftest.gdb_batch(
        ["run", "python gdb.execute('pyref owners ' + open(%r).read())"
         % os.path.join(d, "addr")], args=["--args", python, "-c", OWNED_AND_BORROWED % d])
    assert "Python Exception" not in out and "note: interpreter frames not read" not in out, out
    assert re.search(r"^  0x[0-9a-f]+  thread 1 .* Python frame f \(<string>\): local 'x'$",
                     out, re.M), out
    ident = pyreftest.interpreter_info(python)
    if ident:   # 3.14+: the borrowed stack ref in g is a possible word, not an owner
        assert re.search(r"possible: thread 1 .* Python frame g \(<string>\): local 'y' "
                         r"\(a borrowed _PyStackRef", out), out
        assert "account: refcount 1, 1 owner found, 0 unexplained" in out, out
    else:
        assert re.search(r"Python frame g \(<string>\): local 'y'$", out, re.M), out
        assert "account: refcount 2, 2 owners found, 0 unexplained" in out, out


RELEASE = "/usr/bin/python3.11"   # Debian's: its debug info is a separate package


def test_release_interpreter_without_symbols_reads_the_extensions_dwarf(tmp_path):
    """The interpreter's debug symbols hidden: the traced extension's own DWARF (built -g)
    describes PyObject and PyTypeObject, so `pyref show` and `pyref history` still read
    the object and its ring; what needs the interpreter's structs says so in one line,
    naming the package."""
    if not os.path.exists(RELEASE):
        pytest.skip("%s not installed" % RELEASE)
    d = str(tmp_path)
    src = os.path.join(pyreftest.ROOT, "tests", "ext", "seedext.c")
    pyreftest.build_ext(src, RELEASE, d)
    core, p = pyreftest.run_to_core(
        RELEASE, [os.path.join(pyreftest.ROOT, "tests", "ext", "seed_driver.py"), d, "leak",
                  "3"], cwd=d)
    arg = int(re.search(r"arg (\d+)", p.stdout).group(1))
    out = pyreftest.gdb_batch(["set debug-file-directory /nonexistent", "file " + RELEASE,
                               "core-file " + core, "echo @@ show\\n", "pyref show 0x%x" % arg,
                               "echo @@ history\\n", "pyref history 0x%x" % arg,
                               "echo @@ pystack\\n", "pyref pystack", "echo @@ end\\n"])
    assert "Python Exception" not in out and "Traceback" not in out, out
    s = sections(out)
    assert re.search(r"^type:\s+list \(type object 0x", s["show"], re.M), out
    assert re.search(r"^refcount: 4$", s["show"], re.M), out
    assert len(re.findall(r"INCREF\s+\d+ -> \d+\s+seedext\.c:\d+ \(leak\)", s["history"])) \
        == 3, out
    stack = [line for line in out.splitlines() if line.startswith("pyref:")]  # stderr
    assert stack == ["pyref: no debug info for _PyRuntimeState: the Python stack reads the "
                     "interpreter's thread states (install the interpreter's debug symbols: "
                     "python3.11-dbg on Debian and Ubuntu)"], out
