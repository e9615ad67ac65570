"""The Python context of each transition: with PYREF_PYCONTEXT=1 the shim
writes PYCTX AUX records (code object, instruction offset) when the calling Python frame
changes; a real core decodes them to the driver's file.py:line with gdbext/pyref/reader/pyframes.py.
Also: pyframes' line-table decoder against each interpreter's own co_lines()/co_positions(),
and the private layouts the shim and pyframes use against the interpreter's headers."""
import json
import os
import re
import subprocess
import textwrap

import pytest

import pyreftest
import test_frees
from pyref.reader import pyframes

SRC = test_frees.SRC
LINES = pyreftest.marker_lines(SRC)
SHIM = os.path.join(pyreftest.ROOT, "c_helpers", "shim")
AUX_PYCTX = 0x10
HOOK_PYCTX = 0x4


def version(python):
    major, minor, _ = pyreftest.py_version(python)
    return major, minor


# ---------------------------------------------------------------------------------------
# pyframes.addr2line against the interpreter
# ---------------------------------------------------------------------------------------
DUMP = textwrap.dedent(r'''
    import json, sys, os
    SYNTH = """
    def f(a,
          b):
        x = [i
             for i in range(a)
             if i % 2]
        try:
            y = {k: (lambda z: z + 1)(k) for k in x}
        except Exception:
            pass
        return (a +
                b)
    """ + "\n" * 300 + "def far(): return 1\n" + "".join(
        "def g%d(q):\n    q = q + %d\n    return q\n" % (i, i) for i in range(40))
    sources = [("synth", SYNTH)]
    import argparse, json as _j, dataclasses, asyncio.base_events, difflib
    for m in (argparse, dataclasses, asyncio.base_events, difflib):
        with open(m.__file__) as f:
            sources.append((m.__name__, f.read()))
    out = []
    def walk(co):
        size = len(co.co_code)
        expect = {}
        for start, end, line in co.co_lines():
            for off in range(start, end, 2):
                expect[off] = line
        pos = None
        if hasattr(co, "co_positions"):
            pos = [p[0] for p in co.co_positions()]
        out.append([co.co_linetable.hex(), co.co_firstlineno, size,
                    [expect.get(off) for off in range(0, size, 2)], pos])
        for c in co.co_consts:
            if hasattr(c, "co_code"):
                walk(c)
    for name, src in sources:
        walk(compile(src, name, "exec"))
    print(json.dumps(out))
''')


@pytest.mark.parametrize("python", pyreftest.interpreters())
def test_addr2line_matches_interpreter(python):
    ver = version(python)
    codes = json.loads(subprocess.check_output([python, "-c", DUMP], text=True))
    assert len(codes) > 300
    checked = 0
    for table_hex, first, size, expect, positions in codes:
        table = bytes.fromhex(table_hex)
        got = [pyframes.addr2line(table, first, off, ver) for off in range(0, size, 2)]
        assert got == expect, (first, table_hex)
        if positions is not None:            # 3.11+: one position per code unit
            assert got == positions
        assert pyframes.addr2line(table, first, -2, ver) == first
        assert pyframes.addr2line(table, first, size + 1000, ver) is None
        assert pyframes.addr2line(table[:len(table) // 2], first, size - 2, ver) in \
            (None, got[-1])                   # truncated table: never raises
        checked += size // 2
    assert checked > 10000


# ---------------------------------------------------------------------------------------
# Layouts: the shim's private frame offsets and pyframes' code-object offsets
# ---------------------------------------------------------------------------------------
INTERNAL_PROBE = r'''
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include "internal/pycore_runtime.h"
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#endif
int main(void)
{
#if PY_VERSION_HEX < 0x030C0000
    printf("PYREF__RUNTIME_TSTATE %zu\n", offsetof(_PyRuntimeState, gilstate.tstate_current));
#endif
#if PY_VERSION_HEX >= 0x030D0000
    printf("PYREF__FRAME_CODE %zu\n", offsetof(_PyInterpreterFrame, f_executable));
    printf("PYREF__FRAME_INSTR %zu\n", offsetof(_PyInterpreterFrame, instr_ptr));
#elif PY_VERSION_HEX >= 0x030B0000
    printf("PYREF__FRAME_CODE %zu\n", offsetof(_PyInterpreterFrame, f_code));
    printf("PYREF__FRAME_INSTR %zu\n", offsetof(_PyInterpreterFrame, prev_instr));
#endif
#if PY_VERSION_HEX >= 0x030B0000
    printf("PYREF__FRAME_OWNER %zu\n", offsetof(_PyInterpreterFrame, owner));
    printf("PYREF__FRAME_PREVIOUS %zu\n", offsetof(_PyInterpreterFrame, previous));
#endif
#if PY_VERSION_HEX >= 0x030E0000
    printf("PYREF__FRAME_OWNED_BY_INTERPRETER %d\n", (int)FRAME_OWNED_BY_INTERPRETER);
#elif PY_VERSION_HEX >= 0x030C0000
    printf("PYREF__FRAME_OWNED_BY_CSTACK %d\n", (int)FRAME_OWNED_BY_CSTACK);
#endif
    return 0;
}
'''

PUBLIC_PROBE = r'''
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#define F(name, expr) printf("%s %ld\n", name, (long)(expr))
int main(void)
{
    F("co_filename", offsetof(PyCodeObject, co_filename));
    F("co_name", offsetof(PyCodeObject, co_name));
#if PY_VERSION_HEX >= 0x030B0000
    F("co_qualname", offsetof(PyCodeObject, co_qualname));
    F("co_code_adaptive", offsetof(PyCodeObject, co_code_adaptive));
#endif
    F("co_firstlineno", offsetof(PyCodeObject, co_firstlineno));
    F("co_linetable", offsetof(PyCodeObject, co_linetable));
    F("ob_type", offsetof(PyObject, ob_type));
    F("var_size", offsetof(PyVarObject, ob_size));
    F("bytes_sval", offsetof(PyBytesObject, ob_sval));
    F("str_state", offsetof(PyASCIIObject, state));
    F("str_length", offsetof(PyASCIIObject, length));
    F("str_ascii_data", sizeof(PyASCIIObject));
    F("str_compact_data", sizeof(PyCompactUnicodeObject));
    return 0;
}
'''


def compile_run(src, python, tmp_path, cflags=()):
    inc = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
        text=True).strip()
    c = tmp_path / "probe.c"
    exe = tmp_path / "probe"
    c.write_text(src)
    subprocess.run(["gcc", "-I" + inc] + list(cflags) +
                   pyreftest.interpreter_info(python).get("cflags", []) +
                   [str(c), "-o", str(exe)], check=True)
    out = subprocess.check_output([str(exe)], text=True)
    return {k: int(v) for k, v in (l.split() for l in out.splitlines())}


def shim_macros(python, tmp_path):
    """The PYREF__* numeric macros pyref_hooks.h defines for `python`."""
    c = tmp_path / "m.c"
    c.write_text("#include <Python.h>\n")
    out = subprocess.check_output(
        ["gcc", "-E", "-dM", "-DPYREF_ENABLE_HOOKS"] +
        pyreftest.pyref_flags(python, "--cflags") +
        pyreftest.interpreter_info(python).get("cflags", []) + [str(c)], text=True)
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r"^#define (PYREF__\w+) (\d+)$", out, re.M)}


STACK_PROBE = r'''
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#if PY_VERSION_HEX < 0x030B0000
#include <frameobject.h>
#else
#include "internal/pycore_frame.h"
#endif
#define F(name, expr) printf("%s %ld\n", name, (long)(expr))
int main(void)
{
    F("runtime_interpreters_head", offsetof(_PyRuntimeState, interpreters.head));
    F("interp_next", offsetof(PyInterpreterState, next));
#if PY_VERSION_HEX >= 0x030B0000
    F("interp_threads_head", offsetof(PyInterpreterState, threads.head));
#else
    F("interp_threads_head", offsetof(PyInterpreterState, tstate_head));
#endif
    F("tstate_next", offsetof(PyThreadState, next));
    F("tstate_thread_id", offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030D0000
    F("tstate_frame", offsetof(PyThreadState, current_frame));
    F("frame_code", offsetof(_PyInterpreterFrame, f_executable));
    F("frame_instr", offsetof(_PyInterpreterFrame, instr_ptr));
#elif PY_VERSION_HEX >= 0x030B0000
    F("tstate_frame", offsetof(PyThreadState, cframe));
    F("cframe_current_frame", offsetof(_PyCFrame, current_frame));
    F("frame_code", offsetof(_PyInterpreterFrame, f_code));
    F("frame_instr", offsetof(_PyInterpreterFrame, prev_instr));
#else
    F("tstate_frame", offsetof(PyThreadState, frame));
    F("frame_previous", offsetof(PyFrameObject, f_back));
    F("frame_code", offsetof(PyFrameObject, f_code));
    F("frame_instr", offsetof(PyFrameObject, f_lasti));
#endif
#if PY_VERSION_HEX >= 0x030B0000
    F("frame_previous", offsetof(_PyInterpreterFrame, previous));
#endif
#if PY_VERSION_HEX >= 0x030C0000
    F("frame_owner", offsetof(_PyInterpreterFrame, owner));
#endif
    return 0;
}
'''


DUMP_WALK_LAYOUT = ("python import dataclasses, json; from pyref.inferior import layout; "
                    "print('@@walk ' + json.dumps(dataclasses.asdict(layout.layouts().walk)))")


def has_fixed_offsets(python):
    """Whether pyframes has the version's fixed offsets (3.10 to 3.13 with the GIL)."""
    return pyframes.fixed_walk_layout(version(python)) is not None and \
        not pyreftest.interpreter_info(python).get("free_threaded")


def dwarf_walk(python, core_path=None):
    """None where pyframes has the version's fixed offsets; else the WalkLayout gdb reads
    from the interpreter's DWARF (3.14+, free-threaded 3.13t), as a gdb-free reader is
    handed it."""
    if has_fixed_offsets(python):
        return None
    out = pyreftest.gdb_batch([DUMP_WALK_LAYOUT], args=[python] + ([core_path] if core_path
                                                                   else []))
    assert "@@walk " in out, out
    return pyframes.walk_layout_from_dict(json.loads(out.split("@@walk ", 1)[1].splitlines()[0]))


@pytest.mark.parametrize("python", pyreftest.interpreters())
def test_layouts_match_headers(python, tmp_path):
    internal = compile_run(INTERNAL_PROBE, python, tmp_path)
    macros = shim_macros(python, tmp_path)
    for name, value in internal.items():
        assert macros.get(name) == value, (name, macros.get(name), value)
    # the offsets pyframes reads: its fixed tables, else (3.14+, 3.13t) DWARF's
    walk = dwarf_walk(python)
    public = compile_run(PUBLIC_PROBE, python, tmp_path)
    layout = pyframes.LAYOUTS[version(python)] if walk is None else walk.code
    for name, value in public.items():
        assert getattr(layout, name) == value, (name, getattr(layout, name), value)
    stack = compile_run(STACK_PROBE, python, tmp_path)
    sl = pyframes.STACK_LAYOUTS[version(python)] if walk is None else walk
    for name, value in stack.items():
        assert getattr(sl, name) == value, (name, getattr(sl, name), value)
    assert (sl.cframe_current_frame is None) == ("cframe_current_frame" not in stack)
    assert (sl.frame_owner is None) == ("frame_owner" not in stack)


# ---------------------------------------------------------------------------------------
# End to end: a real core, decoded to file.py:line
# ---------------------------------------------------------------------------------------
DRIVER = textwrap.dedent(r'''
    import sys, threading
    sys.path.insert(0, sys.argv[1])
    import frees_ext as ext
    obj = object()

    def inner(o):
        ext.touch(o)  # @py-inner
        return o

    def outer():
        ext.touch(obj)  # @py-outer
        ext.call(inner, obj)  # @py-call
        ext.touch(obj)  # @py-after

    outer()
    t = threading.Thread(target=inner, args=(obj,))
    t.start()
    t.join()
    ext.from_bare_thread(obj)  # @py-bare
    print("STATE", ext.state())
    sys.stdout.flush()

    def finish():
        ext.crash()  # @py-crash

    finish()  # @py-finish
''')


@pytest.fixture(scope="module", params=pyreftest.interpreters())
def built(request, tmp_path_factory):
    python = request.param
    d = tmp_path_factory.mktemp("pyctx")
    test_frees.build_hooked(python, str(d))
    drv = d / "pyctx_driver.py"
    drv.write_text(DRIVER)
    return python, str(d), str(drv)


def py_markers(path):
    """{marker: line} for `# @marker` comments of a Python file."""
    with open(path) as f:
        return {m: n for n, text in enumerate(f, 1) for m in re.findall(r"#\s*@([\w-]+)", text)}


def contexts(ring):
    """[(record, ctx)] for every non-AUX record in seq order, ctx = (code, offset) of the
    PYCTX record in force on its thread (None: none written yet)."""
    by_thread = {}
    for r in ring.records:
        by_thread.setdefault(r.thread, []).append(r)
    out = []
    for recs in by_thread.values():
        ctx = None
        for r in sorted(recs, key=lambda r: r.pos):
            if r.op_name == "AUX":           # unattached (its record overwritten)
                if r.site == AUX_PYCTX:
                    ctx = (r.obj, r.refcnt)
                continue
            for a in r.aux:
                if a.site == AUX_PYCTX:
                    ctx = (a.obj, a.refcnt)
            out.append((r, ctx))
    return sorted(out, key=lambda rc: rc[0].seq)


def test_pycontext_core(built, tmp_path):
    python, moddir, driver = built
    ver = version(python)
    core_path, proc = pyreftest.run_to_core(python, [driver, moddir], cwd=str(tmp_path),
                                            env={"PYREF_PYCONTEXT": "1"})
    assert "STATE" in proc.stdout, proc.stderr
    ring, site = pyreftest.ring_from_core(core_path)
    assert ring.errors == []
    from pyref.reader import corefile
    core = corefile.Core(core_path)
    hooks = int.from_bytes(core.read(ring.addr + test_frees.HOOKS_OFF, 4), "little")
    assert hooks & HOOK_PYCTX
    drv_lines = py_markers(driver)
    walk = dwarf_walk(python, core_path)

    def where(ctx):
        if ctx is None or ctx[0] == 0:
            return None
        loc = pyframes.location(core.read, ctx[0], ctx[1], ver, walk)
        assert loc is not None, ctx
        filename, name, line = loc
        return os.path.basename(filename), name.rsplit(".", 1)[-1], line

    got = []
    for r, ctx in contexts(ring):
        s = site(r)
        if s and s[0] == "frees_ext.c" and r.op_name == "INCREF":
            marker = {v: k for k, v in LINES.items()}.get(s[1])
            if marker:                        # not Py_RETURN_NONE's INCREF (<= 3.11)
                got.append((marker, where(ctx), r.thread))
    D = "pyctx_driver.py"
    expect = [
        ("touch-incref", (D, "outer", drv_lines["py-outer"])),
        ("call-incref", (D, "outer", drv_lines["py-call"])),
        ("touch-incref", (D, "inner", drv_lines["py-inner"])),
        ("touch-incref", (D, "outer", drv_lines["py-after"])),
        ("touch-incref", (D, "inner", drv_lines["py-inner"])),     # the Python thread
        ("bare-incref", None),                                      # a C thread: no frame
    ]
    assert [(m, w) for m, w, _ in got] == expect, got
    threads = [t for _, _, t in got]
    assert threads[0] == threads[3] and len({threads[0], threads[4], threads[5]}) == 3

    # at the crash: the Python stack of the crashing thread, read from the core
    runtime = core.symbol("_PyRuntime")
    assert runtime
    stacks = pyframes.python_stacks(core.read, runtime, ver, walk)
    assert len(stacks) == 1 and not stacks[0].truncated, stacks   # the thread was joined
    assert [(os.path.basename(f.filename), f.name, f.line) for f in stacks[0].frames] == [
        (D, "finish", drv_lines["py-crash"]), (D, "<module>", drv_lines["py-finish"])]

    # the call's DECREF comes after inner() returned: the context is back in outer()
    decs = [(site(r)[1], where(ctx)) for r, ctx in contexts(ring)
            if site(r) and site(r)[0] == "frees_ext.c" and r.op_name == "DECREF"]
    assert (LINES["call-decref"], (D, "outer", drv_lines["py-call"])) in decs


def test_pycontext_off_by_default(built, tmp_path):
    python, moddir, driver = built
    core_path, proc = pyreftest.run_to_core(python, [driver, moddir], cwd=str(tmp_path),
                                            env={"PYREF_PYCONTEXT": "0"})
    ring, _ = pyreftest.ring_from_core(core_path)
    assert all(ctx is None for _, ctx in contexts(ring))


# ---------------------------------------------------------------------------------------
# The commands: the Python line beside each C site, or how to get it
# ---------------------------------------------------------------------------------------
DEMO_SRC = os.path.join(pyreftest.ROOT, "demo", "demoext.c")
SCENARIO = os.path.join(pyreftest.ROOT, "demo", "scenario.py")
SEED_SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "seedext.c")
SEED_DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "seed_driver.py")
HINT = "Python lines not recorded: run the program with PYREF_PYCONTEXT=1 to see them"


def _scenario_line(call):
    """The line of demo/scenario.py that calls demoext.CALL()."""
    with open(SCENARIO) as f:
        return next(n for n, text in enumerate(f, 1) if "demoext.%s(" % call in text)


@pytest.mark.parametrize("python", pyreftest.interpreters(("3.11d", "3.12")))
def test_commands_show_the_python_line(python, tmp_path):
    pyreftest.build_ext(DEMO_SRC, python, str(tmp_path))
    pyreftest.build_ext(SEED_SRC, python, str(tmp_path))
    line = _scenario_line("stolen_then_decref")
    py = "[py scenario.py:%d in <module>]" % line
    out = {}
    for mode in ("1", "0"):
        d = tmp_path / ("ctx" + mode)
        d.mkdir()
        core, _ = pyreftest.run_to_core(python, [SCENARIO, str(tmp_path), "stolen_then_decref"],
                                        cwd=str(d), env={"PYREF_PYCONTEXT": mode})
        out[mode] = pyreftest.gdb_batch(["pyref why", "echo @@json\\n", "pyref why --json"],
                                        args=[python, core])
    text, js = out["1"].split("@@json\n")
    assert re.search(r"^culprit:  demoext\.c:\d+ \(stolen_then_decref\)  Py_DECREF  %s$"
                     % re.escape(py), text, re.M), text
    assert re.search(r"^origin:   stolen by PyList_SetItem at .*  %s$" % re.escape(py), text,
                     re.M), text
    assert re.search(r"^\s+\d+  STEAL .* %s$" % re.escape(py), text, re.M), text
    assert HINT not in text
    rep = json.loads(js[js.index("{"):js.rindex("}") + 1])
    assert rep["python_context"] is True
    assert rep["culprit"]["python"] == {"file": SCENARIO, "line": line, "function": "<module>"}
    assert all(e["python"]["line"] == line for e in rep["evidence"]), rep["evidence"]
    text, js = out["0"].split("@@json\n")
    assert "[py " not in text and ("python:   " + HINT + "\n") in text, text
    rep = json.loads(js[js.index("{"):js.rindex("}") + 1])
    assert rep["python_context"] is False and rep["culprit"]["python"] is None

    # history and leaks of a leak: 3 calls from one Python line
    with open(SEED_DRIVER) as f:
        leak_line = next(n for n, t in enumerate(f, 1) if "seedext.leak(arg)" in t)
    seen = {}
    for mode in ("1", "0"):
        d = tmp_path / ("seed" + mode)
        d.mkdir()
        core, proc = pyreftest.run_to_core(python, [SEED_DRIVER, str(tmp_path), "leak", "3"],
                                           cwd=str(d), env={"PYREF_PYCONTEXT": mode})
        arg = "0x%x" % int(proc.stdout.split("arg ")[1].split()[0])
        seen[mode] = pyreftest.gdb_batch(["pyref history " + arg, "pyref leaks --no-scan",
                                          "pyref history --json " + arg], args=[python, core])
    py = "[py seed_driver.py:%d in <module>]" % leak_line
    leaked = [ln for ln in seen["1"].splitlines() if re.search(r" INCREF .* seedext\.c:", ln)]
    assert len(leaked) == 3 and all(ln.endswith(py) for ln in leaked), seen["1"]
    assert re.search(r"^\s+3\s+1\s+seedext\.c:\d+ \(leak\)\s+list\s+Py_INCREF  e\.g\. "
                     r"0x[0-9a-f]+  %s$" % re.escape(py), seen["1"], re.M), seen["1"]
    hist = json.loads(seen["1"][seen["1"].index("{"):seen["1"].rindex("}") + 1])
    assert hist["python_context"] is True
    assert [r["python"]["line"] for life in hist["lifetimes"] for r in life
            if r["op"] == "INCREF"] == [leak_line] * 3
    assert "[py " not in seen["0"]
    assert seen["0"].count("(" + HINT + ")\n") == 1, seen["0"]   # pyref history
    assert seen["0"].count("python: " + HINT + "\n") == 1, seen["0"]   # pyref leaks
