/*
 * watch_ext — one object through a known series of reference-count changes, for the
 * `pyref watch` and `pyref pystack` tests. Tests name lines by their `@marker` comments.
 *
 * series() creates a list, publishes it in `watch_ext_target`, calls watch_ext_ready()
 * (where the tests break and start watching), then changes its count by the steps below,
 * two of them inside CPython on the extension's behalf, and finally releases it.
 * tests/ext/watch_driver.py calls series() through Python functions, and call() lets it
 * go through C into Python again.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *volatile watch_ext_target;   /* the object under watch, for `pyref watch` */

/* A compiler barrier: without it an optimising compiler merges consecutive changes of the
 * same count (+1 +1 -1 becomes one +1 in an untraced -O1 build), and the watch would
 * rightly log fewer, larger steps than the source shows. */
#define STEP() __asm__ volatile("" ::: "memory")

/* The tests break here; noinline so that the breakpoint has a place to go. */
__attribute__((noinline)) void watch_ext_ready(void)
{
    __asm__ volatile("" ::: "memory");
}

static PyObject *series(PyObject *self, PyObject *unused)
{
    PyObject *o = PyList_New(0);            /* count 1 */
    PyObject *holder = PyList_New(0);
    if (o == NULL || holder == NULL)
        return NULL;
    watch_ext_target = o;
    watch_ext_ready();
    Py_INCREF(o);                           /* @inc1 */ /* 1 -> 2 */
    STEP();
    Py_INCREF(o);                           /* @inc2 */ /* 2 -> 3 */
    STEP();
    Py_DECREF(o);                           /* @dec1 */ /* 3 -> 2 */
    STEP();
    Py_XINCREF(o);                          /* @xinc */ /* 2 -> 3 */
    STEP();
    if (PyList_Append(holder, o) < 0)       /* @append */ /* 3 -> 4, inside CPython */
        return NULL;
    Py_DECREF(holder);                      /* @release */ /* 4 -> 3, in list_dealloc */
    STEP();
    Py_DECREF(o);                           /* @dec2 */ /* 3 -> 2 */
    STEP();
    Py_XDECREF(o);                          /* @xdec */ /* 2 -> 1 */
    STEP();
    Py_DECREF(o);                           /* @dealloc */ /* 1 -> 0 */
    STEP();
    watch_ext_target = NULL;
    Py_RETURN_NONE;
}

/* Calls fn() from C: on 3.12+ the interpreter then pushes a shim frame, which a Python
 * stack reader must skip. */
static PyObject *call(PyObject *self, PyObject *fn)
{
    return PyObject_CallNoArgs(fn);
}

static PyMethodDef methods[] = {
    {"series", series, METH_NOARGS, NULL},
    {"call", call, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "watch_ext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_watch_ext(void)
{
    return PyModule_Create(&module);
}
