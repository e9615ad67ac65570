"""Deallocation capture: an object the extension touched gets a FREE record
with its type when its memory is freed, whoever frees it: CPython's list_dealloc, a dict
clear, a deletion run by a __del__, the extension's own last DECREF (DEALLOC then FREE), a
realloc that moves it (FREE + AUX MOVED). Checked on real cores of every interpreter, under
the default allocator and PYTHONMALLOC=malloc and =debug (the hook chains whatever is
installed), through the gdb-free decoder."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "frees_ext.c")
LINES = pyreftest.marker_lines(SRC)
AUX_MOVED = 0x11
HOOK_FREES = 0x1
HOOKS_OFF = 96          # header.hooks (docs/ring-format.md)


def runtime_has_hooks():
    """True when build/libpyref.so already holds frees.c and context.c (Makefile merged)."""
    pyreftest.ensure_runtime()
    out = subprocess.run(["nm", "-D", "--defined-only",
                          os.path.join(pyreftest.BUILD, "libpyref.so")],
                         capture_output=True, text=True).stdout
    return "pyref_frees_hook" in out


def build_hooked(python, outdir, src=SRC, static=False):
    """frees_ext (or `src`) for `python`, through the shim with the hooks compiled in. Until
    the runtime library holds frees.c/context.c, their objects are linked into the module."""
    extra = ["-DPYREF_ENABLE_HOOKS"]
    if not runtime_has_hooks():
        for name in ("frees", "context"):
            obj = os.path.join(outdir, "pyref_%s.o" % name)
            subprocess.run(["gcc", "-O2", "-g", "-fPIC", "-std=gnu11", "-pthread",
                            "-I" + os.path.join(pyreftest.ROOT, "c_helpers", "include"),
                            "-c", os.path.join(pyreftest.ROOT, "c_helpers", name + ".c"),
                            "-o", obj], check=True)
            extra.append(obj)
    return pyreftest.build_ext(src, python, outdir, extra_cflags=extra, static=static)


DRIVER = textwrap.dedent(r'''
    import gc, json, sys
    sys.path.insert(0, sys.argv[1])
    import frees_ext as ext

    out = {"state": ext.state()}

    class Item:                      # GC, managed dict on 3.11+: object 32 bytes in
        pass

    class Slotted:                   # GC, no dict: object 16 bytes in
        __slots__ = ("a",)

    def pairs(objs):
        return [(id(o), id(type(o)), type(o).__name__) for o in objs]

    # 1. a list frees its items (list_dealloc)
    items = [Item(), Slotted(), bytearray(b"x" * 40), int("7" * 40), b"%d" % 12345678901]
    for o in items:
        ext.touch(o)
    out["list"] = pairs(items)
    del o
    holder = [items]
    del items
    holder.clear()                   # the list dies here, and with it its items

    # 2. a dict clear frees its values
    d = {"a": Item(), "b": bytearray(7), "c": int("3" * 30)}
    for v in d.values():
        ext.touch(v)
    out["dict"] = pairs(d.values())
    del v
    d.clear()

    # 3. a __del__ deletes the last reference to a touched object
    registry = {"victim": Slotted()}
    ext.touch(registry["victim"])
    out["del"] = pairs([registry["victim"]])

    class Reaper:
        def __del__(self):
            registry.pop("victim")

    r = Reaper()
    del r

    # 4. the extension frees its own object: DEALLOC, then FREE
    out["own"] = ext.own_cycle()

    # 5. a realloc that moves a touched object
    out["resized"] = ext.resized()

    # 6. an untouched object is not reported
    quiet = Item()
    out["quiet"] = id(quiet)
    del quiet
    gc.collect()

    sys.stdout.write("JSON " + json.dumps(out) + "\n")
    sys.stdout.flush()
    ext.crash()
''')


@pytest.fixture(scope="module", params=pyreftest.interpreters())
def built(request, tmp_path_factory):
    python = request.param
    d = tmp_path_factory.mktemp("frees")
    build_hooked(python, str(d))
    drv = d / "frees_driver.py"
    drv.write_text(DRIVER)
    return python, str(d), str(drv)


def run(built, tmp_path, env=None):
    python, moddir, driver = built
    core, proc = pyreftest.run_to_core(python, [driver, moddir], cwd=str(tmp_path), env=env)
    line = [l for l in proc.stdout.splitlines() if l.startswith("JSON ")]
    assert line, proc.stdout + proc.stderr
    out = json.loads(line[0][5:])
    ring, site = pyreftest.ring_from_core(core)
    assert ring.errors == [], ring.errors
    from pyref.reader import corefile
    hooks = int.from_bytes(corefile.Core(core).read(ring.addr + HOOKS_OFF, 4), "little")
    return out, ring, site, hooks


def frees_of(ring, addr):
    return [r for r in ring.records if r.op_name == "FREE" and r.obj == addr]


def check_freed(ring, expected, what):
    """Each (addr, type, name) touched object has a FREE with its type after a touch of its
    address. (An address can be reused by a later object of the same run, so there may be
    other records at it, but never a FREE that no touch precedes.)"""
    for addr, tp, name in expected:
        recs = ring.records_for(addr)
        frees = [r for r in recs if r.op_name == "FREE"]
        good = [f for f in frees if f.refcnt == tp and f.site == 0 and f.delta == 0 and
                any(r.op_name in ("INCREF", "DECREF") and r.seq < f.seq for r in recs)]
        assert good, "%s: no FREE of %s at %#x (type %#x): %r" % (what, name, addr, tp, recs)


@pytest.mark.parametrize("malloc", [None, "malloc", "debug"])
def test_frees(built, tmp_path, malloc):
    python = built[0]
    if malloc == "malloc" and pyreftest.interpreter_info(python).get("free_threaded"):
        pytest.skip("free-threaded CPython refuses PYTHONMALLOC=malloc (its GC walks "
                    "mimalloc's heaps)")
    env = {"PYTHONMALLOC": malloc} if malloc else {}
    out, ring, site, hooks = run(built, tmp_path, env)
    state, header_hooks, py_version, _ = out["state"]
    assert state == 1, "free hook not installed (was the GIL held at dlopen?)"
    assert header_hooks & HOOK_FREES and hooks & HOOK_FREES
    check_freed(ring, out["list"], "list_dealloc")
    check_freed(ring, out["dict"], "dict clear")
    check_freed(ring, out["del"], "__del__")

    # the extension's own object: DEALLOC at its line, then FREE of a bytes object
    own = ring.records_for(out["own"])
    ops = [r.op_name for r in own]
    assert ops[-2:] == ["DEALLOC", "FREE"], ops
    assert site(own[-2])[1] == LINES["own-dealloc"]
    assert own[-1].seq == own[-2].seq + 1 or own[-1].seq > own[-2].seq

    old, new = out["resized"]
    if old != new:                   # moved: FREE at the old address, AUX names the new
        moved = [f for f in frees_of(ring, old)
                 if [(a.site, a.obj) for a in f.aux] == [(AUX_MOVED, new)]]
        assert len(moved) == 1, frees_of(ring, old)

    # Never a FREE that no record of the same address precedes since the previous FREE
    # there: an address reused by an untouched object (like `quiet`) is not reported.
    last = {}
    for r in ring.records:
        if r.op_name == "FREE":
            assert last.get(r.obj) not in (None, "FREE"), r
        last[r.obj] = r.op_name


def test_free_cost_bounded(built, tmp_path):
    """The interpreter's own frees pay the probe, not a record: a workload freeing a
    million untouched objects adds no FREE records."""
    python, moddir, _ = built
    code = ("import sys; sys.path.insert(0, %r); import frees_ext as ext\n"
            "for i in range(200000): x = [object(), b'%%d' %% i, i * 10 ** 20]\n"
            "ext.touch(x); sys.stdout.flush(); ext.crash()\n" % moddir)
    core, proc = pyreftest.run_to_core(python, ["-c", code], cwd=str(tmp_path))
    ring, _ = pyreftest.ring_from_core(core)
    frees = [r for r in ring.records if r.op_name == "FREE"]
    assert len(frees) <= 1, frees


@pytest.mark.parametrize("python", pyreftest.interpreters())
def test_refused_without_gil(python, tmp_path):
    """dlopen'ed without the GIL (a ctypes call of libc's dlopen releases it), the
    constructor must not touch the allocator: the hook is refused, the header says so, and
    the module still works when imported afterwards."""
    mod = build_hooked(python, str(tmp_path))
    code = ("import ctypes, sys\n"
            "libc = ctypes.CDLL(None); libc.dlopen.restype = ctypes.c_void_p\n"
            "assert libc.dlopen(%r.encode(), 2)\n"
            "sys.path.insert(0, %r)\n"
            "import frees_ext as ext; x = [bytearray(3)]; ext.touch(x[0]); del x\n"
            "print(ext.state())" % (mod, str(tmp_path)))
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    state, hooks = eval(out.stdout)[:2]
    assert state == 2 and hooks & 0x2 and not hooks & HOOK_FREES, out.stdout


@pytest.mark.parametrize("python", pyreftest.interpreters())
@pytest.mark.parametrize("mode", ["c", "c++", "limited"])
def test_hooks_compile(python, mode, tmp_path):
    """The hooks header compiles cleanly as C, as C++, and under Py_LIMITED_API (where the
    hooks are off)."""
    src = tmp_path / "t.c"
    src.write_text("#include <Python.h>\n"
                   "PyObject *f(PyObject *o) { Py_INCREF(o); Py_DECREF(o); return o; }\n")
    cmd = {"c": ["gcc", "-x", "c"], "c++": ["g++", "-x", "c++"],
           "limited": ["gcc", "-x", "c", "-DPy_LIMITED_API=0x030A0000"]}[mode]
    cmd += ["-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-DPYREF_ENABLE_HOOKS"]
    if mode == "limited" and pyreftest.interpreter_info(python).get("free_threaded"):
        pytest.skip("free-threaded CPython does not support Py_LIMITED_API")
    cmd += pyreftest.pyref_flags(python, "--cflags") + [str(src)]
    cmd += pyreftest.interpreter_info(python).get("cflags", [])
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("python", pyreftest.every_version())
def test_double_decref_fails_in_cpython(python, tmp_path):
    """A DECREF of an object whose memory CPython already freed (a debug build's 0xdd fill)
    reaches CPython's own DECREF, whose negative-count check ends the process: the shim's
    bookkeeping after the record does not read the freed object's type (it used to fault
    there, in pyref's code, hiding the user's bug behind a crash in a header)."""
    major, minor, debug = pyreftest.py_version(python)
    if not debug:
        pytest.skip("a release build does not fill freed memory: the second DECREF's "
                    "outcome is the allocator's")
    d = tmp_path / "m"
    d.mkdir()
    build_hooked(python, str(d))
    code = "import sys; sys.path.insert(0, %r); import frees_ext; frees_ext.double_decref()" % str(d)
    p = subprocess.run([python, "-X", "faulthandler", "-c", code], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == -6, (p.returncode, p.stderr[-2000:])   # SIGABRT, not SIGSEGV
    assert "negative ref" in p.stderr.lower(), p.stderr[-2000:]
    assert "frees_ext.c:%d" % LINES["second-release"] in p.stderr, p.stderr[-2000:]


@pytest.mark.parametrize("python", pyreftest.interpreters())
def test_static_archive(python, tmp_path):
    """With libpyref.a linked into the extension, the extension's constructor may run before
    the runtime's: the hook still installs, into a ring set that exists, and reports."""
    build_hooked(python, str(tmp_path), static=True)
    code = ("import sys; sys.path.insert(0, %r); import frees_ext as ext\n"
            "print(ext.state())" % str(tmp_path))
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    state, hooks = eval(out.stdout)[:2]
    assert state == 1 and hooks & HOOK_FREES, out.stdout
