/*
 * seedext — the seed reference-count patterns, as an ordinary extension built through the
 * pyref shim. Tests name lines by their `@marker` comments, never by number.
 * Each function is called once by tests/ext/seed_driver.py, which then aborts for a core.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Correct: a new reference, an extra INCREF/DECREF, released. */
static PyObject *correct(PyObject *self, PyObject *unused)
{
    PyObject *o = PyList_New(0);
    if (o == NULL)
        return NULL;
    Py_INCREF(o);  /* @correct-incref */
    Py_DECREF(o);  /* @correct-decref */
    Py_DECREF(o);  /* @correct-dealloc */
    Py_RETURN_NONE; /* @correct-return */
}

/* Leak: takes a reference to its argument and never releases it. */
static PyObject *leak(PyObject *self, PyObject *arg)
{
    Py_INCREF(arg); /* @leak-incref */
    Py_RETURN_NONE;
}

/* Bug: DECREF of the borrowed result of PyTuple_GetItem. The tuple still owns the item,
 * so the item dies here and the tuple's own DECREF later touches freed memory. */
static PyObject *decref_borrowed(PyObject *self, PyObject *unused)
{
    PyObject *t = PyTuple_New(1);
    if (t == NULL)
        return NULL;
    PyTuple_SetItem(t, 0, PyList_New(0));
    PyObject *item = PyTuple_GetItem(t, 0);
    Py_INCREF(item); /* @borrowed-incref */
    Py_DECREF(item); /* @borrowed-decref */
    Py_DECREF(item); /* @borrowed-bad-decref */
    Py_XDECREF(t);   /* @borrowed-tuple-decref */
    Py_RETURN_NONE;
}

/* Bug: PyList_SetItem steals `item`; the DECREF afterwards releases a reference this code
 * no longer owns. */
static PyObject *steal_then_decref(PyObject *self, PyObject *unused)
{
    PyObject *list = PyList_New(1);
    PyObject *item = PyList_New(0);
    if (list == NULL || item == NULL)
        return NULL;
    Py_INCREF(item);                 /* @steal-incref */
    Py_DECREF(item);                 /* @steal-decref */
    PyList_SetItem(list, 0, item);
    Py_DECREF(item);                 /* @steal-bad-decref */
    Py_CLEAR(list);                  /* @steal-list-clear */
    Py_RETURN_NONE;
}

/* Bug on 3.11 and earlier: Py_DECREF(Py_None) without an INCREF. Harmless on 3.12+, where
 * None is immortal. */
static PyObject *decref_none(PyObject *self, PyObject *unused)
{
    Py_DECREF(Py_None); /* @none-decref */
    return PyLong_FromLong(0);
}

/* Every Py_* macro the shim redefines, each once, on a fresh list. */
static PyObject *all_macros(PyObject *self, PyObject *unused)
{
    PyObject *a = PyList_New(0);
    PyObject *b = NULL;
    if (a == NULL)
        return NULL;
    Py_XINCREF(a);               /* @macros-xincref */
    Py_XINCREF(b);               /* @macros-xincref-null */
    PyObject *c = Py_NewRef(a);  /* @macros-newref */
    PyObject *d = Py_XNewRef(a); /* @macros-xnewref */
    Py_XDECREF(d);               /* @macros-xdecref */
    Py_SETREF(c, Py_NewRef(a));  /* @macros-setref */
    Py_XSETREF(c, NULL);         /* @macros-xsetref */
    Py_DECREF(a);                /* @macros-decref */
    Py_CLEAR(a);                 /* @macros-clear */
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"correct", correct, METH_NOARGS, NULL},
    {"leak", leak, METH_O, NULL},
    {"decref_borrowed", decref_borrowed, METH_NOARGS, NULL},
    {"steal_then_decref", steal_then_decref, METH_NOARGS, NULL},
    {"decref_none", decref_none, METH_NOARGS, NULL},
    {"all_macros", all_macros, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "seedext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_seedext(void)
{
    return PyModule_Create(&module);
}
