/*
 * leakcheck_ext — the traced extension of tests/system/test_leak_check.py (bin/pyref-run):
 * one function that leaks a reference per call and one that returns None without taking a
 * reference to it, each correct when built with -DFIXED; and one that crashes. Tests name
 * lines by their `@marker` comments.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Keeps nothing, but (unless FIXED) takes a reference to its argument and never drops it. */
static PyObject *remember(PyObject *self, PyObject *obj)
{
#ifndef FIXED
    Py_INCREF(obj);                 /* @leak */
#endif
    Py_RETURN_NONE;
}

/* Returns None; unless FIXED, without the reference the caller will drop: each call takes
 * one from None's count, which no ring record shows. */
static PyObject *nothing(PyObject *self, PyObject *unused)
{
#ifndef FIXED
    return Py_None;                 /* @none */
#else
    Py_RETURN_NONE;
#endif
}

/* A NULL pointer dereference: the crash pyref-run reports with pyref why. */
static PyObject *crash(PyObject *self, PyObject *unused)
{
    volatile int *p = NULL;
    return PyLong_FromLong(*p);     /* @crash */
}

static PyMethodDef methods[] = {
    {"remember", remember, METH_O, "leak a reference to the argument (unless FIXED)"},
    {"nothing", nothing, METH_NOARGS, "return None (without a reference, unless FIXED)"},
    {"crash", crash, METH_NOARGS, "dereference NULL"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "leakcheck_ext", NULL, -1,
                                       methods};

PyMODINIT_FUNC PyInit_leakcheck_ext(void)
{
    return PyModule_Create(&moduledef);
}
