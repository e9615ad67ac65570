/*
 * leaks_ext — reference patterns for `pyref leaks` (tests/gdb/test_leaks.py), built through the
 * pyref shim: references returned to Python, which the ring never sees released, beside
 * references really leaked. Tests name lines by their `@marker` comments.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <signal.h>

/* A new reference to the argument, returned to the caller (who keeps it or not). */
static PyObject *new_ref(PyObject *self, PyObject *obj)
{
    return Py_NewRef(obj);          /* @return-newref */
}

/* A new int, returned to the caller. */
static PyObject *new_int(PyObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLong(n);      /* @return-long */
}

/* Leaks one reference to its argument per call. */
static PyObject *leak_ref(PyObject *self, PyObject *obj)
{
    Py_INCREF(obj);                 /* @leak-incref */
    Py_RETURN_NONE;
}

/* Where the target stops: a breakpoint here (live), or its SIGABRT (core). */
__attribute__((noinline)) void leaks_stop(void)
{
    raise(SIGABRT);
}

static PyObject *stop(PyObject *self, PyObject *unused)
{
    leaks_stop();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"new_ref", new_ref, METH_O, "return a new reference to the argument"},
    {"new_int", new_int, METH_O, "return a new int equal to the argument"},
    {"leak_ref", leak_ref, METH_O, "leak one reference to the argument"},
    {"stop", stop, METH_NOARGS, "stop the process"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "leaks_ext", NULL, -1,
                                       methods};

PyMODINIT_FUNC PyInit_leaks_ext(void)
{
    return PyModule_Create(&moduledef);
}
