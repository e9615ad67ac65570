"""The shim's thread tests (c_helpers/shim/Python.h, pyref_capi_prelude.h) on a real
extension: PYREF=off records nothing and registers no thread, through every kind of
wrapper, while the wrapped operations keep their effect; recording on, a steal that is a
thread's first record (pyref__before() finds the thread without a descriptor, so
pyref__stolen() takes the full path and registers it) and a steal on a registered thread
(pyref__before()'s descriptor reused after the call) are each recorded once, as STEAL; a
function whose first record registers the thread records all its sites.
Ring read through ctypes from the running process (header and descriptor offsets:
docs/ring-format.md). Built at -O0 (the optimize("O2") copies) and -O2."""
import os
import shutil
import subprocess
import sys

import pytest

import pyreftest

SRC = r"""
#include <Python.h>
/* steal(o): the thread's only traced operation is PyTuple_SET_ITEM's steal; the tuple is
 * made and dropped through the unwrapped functions, o's reference given back by hand. */
static PyObject *steal(PyObject *self, PyObject *o)
{
    (void)self;
    PyObject *t = (PyTuple_New)(1);
    if (t == NULL)
        return NULL;
    (Py_IncRef)(o);
    PyTuple_SET_ITEM(t, 0, o);
    (Py_DecRef)(t);
    return (Py_IncRef)(Py_None), Py_None;
}
/* mix(o): one of each: INCREF/DECREF, NEW, BORROW, STEAL (function and macro), a build. */
static PyObject *mix(PyObject *self, PyObject *o)
{
    (void)self;
    Py_INCREF(o);
    PyObject *l = PyList_New(0), *t = PyTuple_New(2);
    if (l == NULL || t == NULL)
        return NULL;
    if (PyList_Append(l, o) < 0)
        return NULL;
    PyObject *b = PyList_GetItem(l, 0);
    PyTuple_SET_ITEM(t, 0, Py_NewRef(b));
    PyTuple_SET_ITEM(t, 1, Py_NewRef(PyList_GET_ITEM(l, 0)));
    PyObject *v = Py_BuildValue("(NO)", t, o);
    Py_DECREF(o);
    Py_DECREF(l);
    return v;
}
static PyMethodDef methods[] = {{"steal", steal, METH_O, ""}, {"mix", mix, METH_O, ""},
                                {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "shimoff", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};
PyMODINIT_FUNC PyInit_shimoff(void) { return PyModule_Create(&module); }
"""

DRIVER = r"""
import ctypes, json, sys, threading
sys.path.insert(0, sys.argv[1])
import shimoff
lib = ctypes.CDLL(sys.argv[2], mode=__import__("os").RTLD_NOLOAD)
addr = ctypes.c_void_p.in_dll(lib, "pyref_ring").value
u32 = lambda a: int.from_bytes(ctypes.string_at(a, 4), "little")
u64 = lambda a: int.from_bytes(ctypes.string_at(a, 8), "little")

def descriptor(tid):
    for i in range(u32(addr + 56)):
        d = addr + u32(addr + 48) + i * u32(addr + 52)
        if u32(d + 44) != 0 and u64(d + 48) == tid:
            return d
    return None

def ops(d):
    ring, head = u64(d), u64(d + 8)
    return [ctypes.string_at(ring + 32 * k + 28, 1)[0] & 0x3F for k in range(head)]

out = {"flags": u32(addr + 60)}
o = object()
rc0 = sys.getrefcount(o)
res = {}
def first_steal():
    shimoff.steal(o)
    res["tid"] = threading.get_native_id()
    res["ops"] = ops(descriptor(res["tid"])) if descriptor(res["tid"]) else None
    shimoff.steal(o)                     # registered now: the descriptor from before()
    res["ops2"] = ops(descriptor(res["tid"])) if descriptor(res["tid"]) else None
th = threading.Thread(target=first_steal)
th.start(); th.join()
def mix_twice():                         # the first call registers the thread mid-function
    tid = threading.get_native_id()
    shimoff.mix(o)
    n1 = ops(descriptor(tid)) if descriptor(tid) else []
    shimoff.mix(o)
    n2 = ops(descriptor(tid)) if descriptor(tid) else []
    res["mix_first"], res["mix_second"] = n1, n2[len(n1):]
th = threading.Thread(target=mix_twice)
th.start(); th.join()
v = shimoff.mix(o)
out.update(res, refcount_kept=sys.getrefcount(o) - rc0, mix=repr(v[0][0] is o and v[1] is o),
           registered=u64(addr + 64), heads=sum(u64(addr + u32(addr + 48) + i * u32(addr + 52) + 8)
                                               for i in range(u32(addr + 56))))
del v
out["refcount_after"] = sys.getrefcount(o) - rc0
print(json.dumps(out))
"""

INCLUDE = subprocess.check_output([sys.executable, "-c", "import sysconfig; print("
                                   "sysconfig.get_paths()['include'])"], text=True).strip()
STEAL = 6


@pytest.fixture(scope="module", params=["-O0", "-O2"])
def ext(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("shimoff" + request.param)
    src = d / "shimoff.c"
    src.write_text(SRC)
    pyreftest.build_ext(str(src), sys.executable, str(d), extra_cflags=[request.param, "-Werror"])
    return str(d)


def run(moddir, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PYREF")}
    e.update(env)
    p = subprocess.run([sys.executable, "-c", DRIVER, moddir,
                        os.path.join(pyreftest.BUILD, "libpyref.so")],
                       capture_output=True, text=True, env=e, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
    import json
    return json.loads(p.stdout.strip().splitlines()[-1])


pytestmark = pytest.mark.skipif(not shutil.which("gcc") or not os.path.exists(
    os.path.join(INCLUDE, "Python.h")), reason="needs gcc and Python.h")


def test_off_records_nothing_and_keeps_the_effects(ext):
    r = run(ext, PYREF="off")
    assert r["flags"] & 1 == 1
    assert (r["registered"], r["heads"], r["ops"], r["ops2"]) == (0, 0, None, None)
    assert r["mix_first"] == r["mix_second"] == []
    assert r["mix"] == "True" and r["refcount_kept"] == 3 and r["refcount_after"] == 0


def test_a_steal_as_first_record_registers_and_records_once(ext):
    r = run(ext)
    assert r["flags"] & 1 == 0
    assert r["ops"] == [STEAL]            # through pyref__stolen_busy(): registered
    assert r["ops2"] == [STEAL, STEAL]    # through before()'s idle descriptor
    assert r["registered"] == 3 and r["heads"] > 2
    # a function whose first record registers the thread records the same as the next call
    # of it (the descriptor it read first, pyref_thread_none, sends its sites to the slow
    # path, which re-reads the TLS)
    assert len(r["mix_first"]) >= 10 and r["mix_first"] == r["mix_second"]
    assert r["mix"] == "True" and r["refcount_kept"] == 3 and r["refcount_after"] == 0
