"""`pyref ring` and `pyref history` through gdb -batch on real processes and real cores:
the transitions the seed extension made at known lines, checked line by line, on every
supported interpreter; the errors users hit (no ring, no process, bad expression)."""
import json
import os
import re

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "seedext.c")
DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "seed_driver.py")
LINES = pyreftest.marker_lines(SRC)


@pytest.fixture(scope="module", params=pyreftest.every_version())
def python(request):
    """A representative suite: `make check` runs it on every version (pyreftest.ALL)."""
    return request.param


@pytest.fixture(scope="module")
def built(python, build_extension):
    return build_extension(SRC, python)


def _core(built, tmp_path, pattern, calls=1):
    python, moddir, _ = built
    core, proc = pyreftest.run_to_core(python, [DRIVER, moddir, pattern, str(calls)],
                                       cwd=str(tmp_path))
    return python, core, proc.stdout


def _live(built, pattern, calls=1, cmds=()):
    """Runs the driver under gdb until its SIGABRT (a live, stopped process), then cmds."""
    python, moddir, _ = built
    return pyreftest.gdb_batch(["handle SIGABRT stop nopass", "run"] + list(cmds),
                               args=["--args", python, DRIVER, moddir, pattern, str(calls)])


def _history_rows(out, ops=("INCREF", "DECREF", "DEALLOC")):
    """[(op, before, after, line, func)] of `pyref history` output, for the shim's ops
    (the C-API origins NEW/BORROW/STEAL are checked by test_capi_origins)."""
    return [(m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5))
            for m in re.finditer(r"^\s+\d+\s+LWP \d+\s+(\w+)\s+(-?\d+) -> (-?\d+)\s+"
                                 r"seedext\.c:(\d+) \((\w+)\)", out, re.M)
            if m.group(1) in ops]


def _clean(out):
    assert "Python Exception" not in out and "Traceback" not in out, out
    return out


def test_history_from_core(built, tmp_path):
    python, core, stdout = _core(built, tmp_path, "leak", 3)
    arg = int(re.search(r"arg (\d+)", stdout).group(1))
    out = _clean(pyreftest.gdb_batch(["pyref ring", "pyref history %d" % arg,
                                      "pyref history --json %d" % arg],
                                     args=[python, core]))
    assert re.search(r"ring at 0x[0-9a-f]+ \(found by symbol\), format v2", out)
    assert re.search(r"torn\s+0\b", out)
    rows = _history_rows(out)
    line = LINES["leak-incref"]
    assert [(op, a - b, l, f) for op, b, a, l, f in rows] == [("INCREF", 1, line, "leak")] * 3
    assert rows[1][1] == rows[0][2] and rows[2][1] == rows[1][2]
    # after the last call returned, the call's own reference to the argument is gone
    assert "now: live, list, refcount %d" % (rows[-1][2] - 1) in out
    js = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert js["address"] == "0x%x" % arg and js["transitions"] == 3
    assert [r["line"] for r in js["lifetimes"][0]] == [line] * 3


def test_history_live(built, tmp_path):
    """The same answers on a live process stopped at its SIGABRT as on a core (gdb turns
    ASLR off, so the list has the same address in both runs)."""
    out = _clean(_live(built, "leak", 3, ["pyref ring"]))
    assert re.search(r"written\s+\d+", out) and re.search(r"torn\s+0\b", out)
    arg = int(re.search(r"arg (\d+)", out).group(1))
    out = _clean(_live(built, "leak", 3, ["pyref history %d" % arg]))
    rows = _history_rows(out)
    assert [(op, a - b, l) for op, b, a, l, _ in rows] == \
        [("INCREF", 1, LINES["leak-incref"])] * 3


def test_history_lifetimes_and_lines(built, tmp_path):
    """The all_macros list: every transition at its marker line; freed at the end."""
    python, core, stdout = _core(built, tmp_path, "all_macros")
    # the list's address is the obj of the record at the macros-xincref line
    from pyref.reader import decode  # noqa: F401  (gdb-free: find the address without gdb)
    ring, site = pyreftest.ring_from_core(core)
    obj = next(r.obj for r in ring.records
               if site(r) and site(r)[1] == LINES["macros-xincref"])
    out = _clean(pyreftest.gdb_batch(["pyref history 0x%x" % obj], args=[python, core]))
    rows = _history_rows(out)
    expect = ["macros-xincref", "macros-newref", "macros-xnewref", "macros-xdecref",
              "macros-setref", "macros-setref", "macros-xsetref", "macros-decref",
              "macros-clear"]
    assert [l for _, _, _, l, _ in rows] == [LINES[m] for m in expect]
    assert rows[-1][:3] == ("DEALLOC", 1, 0)
    assert "now:" in out


def test_errors(built, tmp_path):
    python, moddir, _ = built
    out = pyreftest.gdb_batch(["pyref ring", "pyref history 0x1234", "pyref show 0"])
    assert out.count("pyref: no process or core file") == 3, out
    # a process without the runtime: a clear line, never "empty"
    out = _clean(pyreftest.gdb_batch(
        ["handle SIGABRT stop nopass", "run", "pyref ring", "pyref history nosuchvar",
         "pyref history -n 0 0x10"],
        args=["--args", python, "-c", "import os; os.abort()"]))
    assert "pyref: no pyref ring in this process" in out
    assert 'pyref: No symbol "nosuchvar" in current context.' in out
    assert "pyref: -n wants a positive number" in out
