/*
 * owners_ext — holders for `pyref owners` and reference patterns for `pyref leaks`, as an
 * ordinary extension built through the pyref shim (tests/gdb/test_owners.py, test_leaks.py).
 * Tests name lines by their `@marker` comments, never by number. Built with -O0 so that
 * hold_local's local lives in its stack frame, where DWARF says it is.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <signal.h>

/* A C static holding a reference. */
static PyObject *held_static = NULL;

static PyObject *hold_static(PyObject *self, PyObject *obj)
{
    Py_INCREF(obj);                 /* @static-incref */
    Py_XSETREF(held_static, obj);
    Py_RETURN_NONE;
}

/* Where the target stops: a breakpoint here (live), or its SIGABRT (core). raise(), not
 * abort(): a call to a noreturn function would leave a return address past the end of
 * this function, which gdb's `frame function` takes for the next one. */
__attribute__((noinline)) void owners_stop(void)
{
    raise(SIGABRT);
}

/* A local of a C frame holding the only reference to a new instance of `cls`. */
static PyObject *hold_local(PyObject *self, PyObject *cls)
{
    PyObject *held_local = PyObject_CallNoArgs(cls);
    if (held_local == NULL)
        return NULL;
    owners_stop();                  /* @local-stop */
    Py_DECREF(held_local);          /* @local-decref */
    Py_RETURN_NONE;
}

/* Just stops (leak tests: no reference is held by the stopping function). */
static PyObject *stop(PyObject *self, PyObject *unused)
{
    owners_stop();
    Py_RETURN_NONE;
}

/* Leaks one reference to its argument per call. */
static PyObject *leak_ref(PyObject *self, PyObject *obj)
{
    Py_INCREF(obj);                 /* @leak-incref */
    Py_RETURN_NONE;
}

/* Correct code: every reference taken is given back or handed over. */
static PyObject *balanced(PyObject *self, PyObject *obj)
{
    Py_INCREF(obj);                 /* @balanced-incref */
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        Py_DECREF(obj);
        return NULL;
    }
    if (PyList_Append(list, obj) < 0) {
        Py_DECREF(list);
        Py_DECREF(obj);
        return NULL;
    }
    PyObject *tuple = PyTuple_Pack(2, obj, list);
    Py_DECREF(list);                /* @balanced-list-decref */
    Py_XDECREF(tuple);              /* @balanced-tuple-decref */
    PyObject *extra = Py_NewRef(obj); /* @balanced-newref */
    Py_SETREF(extra, Py_NewRef(obj));
    Py_DECREF(extra);
    Py_DECREF(obj);                 /* @balanced-decref */
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"hold_static", hold_static, METH_O, "keep a reference in a C static"},
    {"hold_local", hold_local, METH_O, "call cls() into a C local, then stop"},
    {"stop", stop, METH_NOARGS, "stop the process"},
    {"leak_ref", leak_ref, METH_O, "leak one reference to the argument"},
    {"balanced", balanced, METH_O, "take and release references correctly"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "owners_ext", NULL, -1,
                                       methods};

PyMODINIT_FUNC PyInit_owners_ext(void)
{
    return PyModule_Create(&moduledef);
}
