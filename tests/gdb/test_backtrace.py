"""The backtrace filter (gdbext/pyref/commands/backtrace.py): in a traced build, `bt`
through a reference-count operation shows no frame of pyref's shim (pyref_decref at
shim/Python.h), by default; `set pyref shim-frames on` and GDB's `disable frame-filter`
show them, and the two stay in step. Stopped in _Py_Dealloc called by the demo's
stolen_then_decref, on a debug build (Py_DECREF out of line) and a release build (inlined)."""
import os
import re

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "demo", "demoext.c")
SCENARIO = os.path.join(pyreftest.ROOT, "demo", "scenario.py")
LINES = pyreftest.marker_lines(SRC)
SHIM_FRAME = re.compile(r"^#\d+ .*\bpyref_\w+ \(.*\) at \S+/shim/\S+\.h:\d+$", re.M)


@pytest.mark.parametrize("ident", ["3.11d", "3.12"])
def test_shim_frames_hidden_by_default(ident, tmp_path):
    python, why = pyreftest.interpreter(ident)
    if python is None:
        pytest.skip(why)
    pyreftest.build_ext(SRC, python, str(tmp_path))
    out = pyreftest.gdb_batch(
        ["set breakpoint pending on", "break stolen_then_decref", "run",
         "break _Py_Dealloc", "continue", "echo @@hidden\\n", "bt 6", "show pyref shim-frames",
         "echo @@shown\\n", "set pyref shim-frames on", "bt 6", "info frame-filter",
         "echo @@gdb\\n", "set pyref shim-frames off", "disable frame-filter global "
         "pyref-shim-frames", "show pyref shim-frames", "bt 6", "enable frame-filter global "
         "pyref-shim-frames", "show pyref shim-frames", "echo @@end\\n"],
        args=["--args", python, SCENARIO, str(tmp_path), "stolen_then_decref"])
    assert "Python Exception" not in out, out
    hidden, shown = out.split("@@hidden\n")[1].split("@@shown\n")
    shown, by_gdb = shown.split("@@gdb\n")
    by_gdb = by_gdb.split("@@end\n")[0]
    user = re.compile(r"^#\d+ .*stolen_then_decref \(.*\) at \S+demoext\.c:%d$"
                      % LINES["s4-culprit"], re.M)
    assert user.search(hidden) and not SHIM_FRAME.search(hidden), hidden
    assert "Showing the frames of pyref's shim in backtraces is off." in hidden
    assert SHIM_FRAME.search(shown) and user.search(shown), shown
    assert re.search(r"^\s+100\s+No\s+pyref-shim-frames$", shown, re.M), shown
    # gdb's own switch is the same setting
    on, off = by_gdb.split("Showing the frames of pyref's shim in backtraces is on.\n")
    assert SHIM_FRAME.search(off)
    assert "Showing the frames of pyref's shim in backtraces is off." in off
