/*
 * micro_ext.c — the micro benchmark's extension module: one loop of Py_INCREF/Py_DECREF
 * pairs, timed inside C.
 *
 * bench/run.py compiles this file twice per interpreter with the same flags: once against
 * the interpreter's own Python.h (MODNAME=micro_untraced) and once through pyref's shim
 * (`pyref-config --cflags`, MODNAME=micro_traced), so the loop below is the same source in
 * both and only what Py_INCREF/Py_DECREF expand to differs.
 */
#include <Python.h>

#include <time.h>

#ifndef MODNAME
#error "build with -DMODNAME=micro_untraced or -DMODNAME=micro_traced"
#endif
#define PYREF_CAT2(a, b) a##b
#define PYREF_CAT(a, b) PYREF_CAT2(a, b)
#define PYREF_STR2(a) #a
#define PYREF_STR(a) PYREF_STR2(a)

#define MAX_OBJS 64

/*
 * pairs(objs, n) -> int: runs n iterations of Py_INCREF(a); Py_DECREF(b) over the list's
 * items (at most 64, a power of two), where b is the item a was k/2 iterations earlier,
 * and returns the elapsed CLOCK_MONOTONIC nanoseconds. Every item gets one extra
 * reference (untimed) for the duration, so no DECREF deallocates and every count is back
 * where it was on return. On bad arguments raises ValueError/TypeError.
 *
 * Why not INCREF and DECREF the same object back to back: on 3.12+ Py_INCREF stores 32 bits
 * and Py_DECREF loads 64, and a load that a narrower store cannot forward stalls ~15 cycles;
 * the untraced loop would measure that stall, not the reference counting.
 */
static PyObject *pairs(PyObject *self, PyObject *args)
{
    PyObject *list;
    long long n;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!L", &PyList_Type, &list, &n))
        return NULL;
    Py_ssize_t k = PyList_GET_SIZE(list);
    if (k < 2 || k > MAX_OBJS || (k & (k - 1)) != 0 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "want 2..64 objects (a power of two) and n >= 0");
        return NULL;
    }
    PyObject *objs[MAX_OBJS];
    for (Py_ssize_t i = 0; i < k; i++) {
        objs[i] = PyList_GET_ITEM(list, i);
        Py_INCREF(objs[i]);
    }
    long long mask = (long long)k - 1, half = (long long)k / 2;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long long i = 0; i < n; i++) {
        PyObject *a = objs[i & mask], *b = objs[(i + half) & mask];
        Py_INCREF(a);
        /* Real code does work between the two: the compiler may not assume anything about
         * memory across this. */
        __asm__ volatile("" : : "r"(a), "r"(b) : "memory");
        Py_DECREF(b);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long ns =
        (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    for (Py_ssize_t i = 0; i < k; i++)
        Py_DECREF(objs[i]);
    return PyLong_FromLongLong(ns);
}

static PyMethodDef methods[] = {
    {"pairs", pairs, METH_VARARGS, "pairs(objs, n) -> ns taken by n Py_INCREF/Py_DECREF pairs"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, PYREF_STR(MODNAME), "pyref micro benchmark", -1, methods,
};

PyMODINIT_FUNC PYREF_CAT(PyInit_, MODNAME)(void)
{
    return PyModule_Create(&module);
}
