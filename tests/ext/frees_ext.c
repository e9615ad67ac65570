/*
 * frees_ext — a small extension built through the pyref shim for the deallocation-capture
 * and Python-context tests (tests/gdb/test_frees.py, tests/gdb/test_pycontext.py). It only touches
 * objects the way any extension does (Py_INCREF/Py_DECREF); who frees them, and when, is
 * up to the Python driver. Tests name lines by their `@marker` comments.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stdlib.h>

/* touch(obj): an INCREF and a DECREF of obj, so pyref has recorded it. */
static PyObject *touch(PyObject *self, PyObject *obj)
{
    Py_INCREF(obj); /* @touch-incref */
    Py_DECREF(obj); /* @touch-decref */
    Py_RETURN_NONE;
}

/* own_cycle(): an object created and released by the extension itself: a DEALLOC record
 * from the shim, then the FREE from the allocator hook. Returns its address. */
static PyObject *own_cycle(PyObject *self, PyObject *unused)
{
    PyObject *o = PyBytes_FromStringAndSize(NULL, 100);
    if (o == NULL)
        return NULL;
    unsigned long long addr = (unsigned long long)(uintptr_t)o;
    Py_INCREF(o); /* @own-incref */
    Py_DECREF(o); /* @own-decref */
    Py_DECREF(o); /* @own-dealloc */
    return PyLong_FromUnsignedLongLong(addr);
}

/* resized(): a bytes object the extension touches and then grows with _PyBytes_Resize,
 * which reallocs (and usually moves) it. Returns (old address, new address). */
static PyObject *resized(PyObject *self, PyObject *unused)
{
    PyObject *o = PyBytes_FromStringAndSize(NULL, 16);
    if (o == NULL)
        return NULL;
    Py_INCREF(o); /* @resize-incref */
    Py_DECREF(o);
    unsigned long long old = (unsigned long long)(uintptr_t)o;
    if (_PyBytes_Resize(&o, 1 << 16) < 0)
        return NULL;
    unsigned long long now = (unsigned long long)(uintptr_t)o;
    Py_DECREF(o);
    return Py_BuildValue("KK", old, now);
}

/* state(): (pyref_frees_state, header.hooks, header.py_version, pyref_pyctx_tss_off),
 * zeros without hooks. */
static PyObject *state(PyObject *self, PyObject *unused)
{
#ifdef PYREF_HOOKS_ACTIVE
    struct pyref_ring_header *h = pyref_ring;
    return Py_BuildValue("kkkn", (unsigned long)pyref_frees_state,
                         (unsigned long)(h ? h->hooks : 0),
                         (unsigned long)(h ? h->py_version : 0),
                         (Py_ssize_t)pyref_pyctx_tss_off);
#else
    return Py_BuildValue("kkkn", 0UL, 0UL, 0UL, (Py_ssize_t)0); /* untraced / no hooks */
#endif
}

/* call(f, *args): calls f from C, touching f first (a transition under the caller's
 * Python frame), and touches the result (a transition after f returned). */
static PyObject *call(PyObject *self, PyObject *args)
{
    PyObject *f = PyTuple_GetItem(args, 0);
    if (f == NULL)
        return NULL;
    Py_INCREF(f); /* @call-incref */
    PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
    PyObject *r = rest ? PyObject_Call(f, rest, NULL) : NULL;
    Py_XDECREF(rest);
    Py_DECREF(f); /* @call-decref */
    return r;
}

/* A C thread with no Python thread state touches an immortal-or-static object's count
 * the way buggy extensions do: the record must carry no Python frame (and not fault). */
static void *bare_thread(void *arg)
{
    PyObject *o = (PyObject *)arg;
#if defined(Py_REF_DEBUG) && PY_VERSION_HEX >= 0x030C0000
    /* debug 3.12+ count a mortal object's INCREF in the interpreter's total, reached
     * through the thread state this thread lacks: touch an immortal one, which they skip */
    o = Py_None;
#endif
    Py_INCREF(o); /* @bare-incref */
    Py_DECREF(o); /* @bare-decref */
    return NULL;
}

/* from_bare_thread(obj): runs bare_thread(obj) on a new pthread and joins it (the GIL is
 * held throughout, so the counts do not race). */
static PyObject *from_bare_thread(PyObject *self, PyObject *obj)
{
    pthread_t th;
    if (pthread_create(&th, NULL, bare_thread, obj) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    pthread_join(th, NULL);
    Py_RETURN_NONE;
}

/* loop(obj, n): n INCREF/DECREF pairs, for cost measurements. */
static PyObject *loop(PyObject *self, PyObject *args)
{
    PyObject *o;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On", &o, &n))
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(o);
        Py_DECREF(o);
    }
    Py_RETURN_NONE;
}

/* alloc_free(n, size, batch): n PyObject_Malloc/PyObject_Free pairs of `size` bytes, in
 * batches of `batch` blocks allocated then freed, for the free hook's cost. */
static PyObject *alloc_free(PyObject *self, PyObject *args)
{
    Py_ssize_t n, size, batch;
    if (!PyArg_ParseTuple(args, "nnn", &n, &size, &batch) || batch < 1)
        return NULL;
    void **blocks = (void **)PyMem_RawMalloc(batch * sizeof(void *));
    if (blocks == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t done = 0; done < n; done += batch) {
        for (Py_ssize_t i = 0; i < batch; i++)
            blocks[i] = PyObject_Malloc(size);
        for (Py_ssize_t i = 0; i < batch; i++)
            PyObject_Free(blocks[i]);
    }
    PyMem_RawFree(blocks);
    Py_RETURN_NONE;
}

/* double_decref(): a bytearray released twice, the second time after CPython freed its
 * memory (a debug build then fills it with 0xdd): the bug the shim must survive, so that
 * the fault, or the debug build's fatal error, comes from CPython's DECREF, not pyref's. */
static PyObject *double_decref(PyObject *self, PyObject *unused)
{
    PyObject *b = PyByteArray_FromStringAndSize("double", 6);
    if (b == NULL)
        return NULL;
    Py_DECREF(b); /* @first-release */
    Py_DECREF(b); /* @second-release */
    Py_RETURN_NONE;
}

static PyObject *crash(PyObject *self, PyObject *unused)
{
    fflush(stdout);
    abort();
}

static PyMethodDef methods[] = {
    {"touch", touch, METH_O, NULL},
    {"own_cycle", own_cycle, METH_NOARGS, NULL},
    {"resized", resized, METH_NOARGS, NULL},
    {"state", state, METH_NOARGS, NULL},
    {"call", call, METH_VARARGS, NULL},
    {"from_bare_thread", from_bare_thread, METH_O, NULL},
    {"loop", loop, METH_VARARGS, NULL},
    {"alloc_free", alloc_free, METH_VARARGS, NULL},
    {"crash", crash, METH_NOARGS, NULL},
    {"double_decref", double_decref, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "frees_ext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_frees_ext(void)
{
    return PyModule_Create(&module);
}
