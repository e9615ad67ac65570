/*
 * demoext — the reference-counting bugs C-extension authors actually write, one function
 * each, plus two controls. `make demo` crashes each one and runs pyref-postmortem on the
 * core. Lines are named by `@marker` comments (the tests check culprit and origin lines).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <unistd.h>

/* 1. DECREF of a borrowed tuple item: the tuple still owns it. */
static PyObject *borrowed_tuple_item(PyObject *self, PyObject *unused)
{
    PyObject *t = PyTuple_New(1);
    if (t == NULL)
        return NULL;
    PyTuple_SetItem(t, 0, PyBytes_FromString("a tuple item"));
    PyObject *item = PyTuple_GetItem(t, 0); /* @s1-origin */
    Py_DECREF(item);                        /* @s1-culprit */
    PyObject *r = PyObject_Repr(t);         /* the tuple's repr reads the freed item */
    Py_XDECREF(r);
    Py_DECREF(t);
    Py_RETURN_NONE;
}

/* 2. A borrowed list item, freed when a store into the list runs a __del__ that deletes
 * it, then used. */
static PyObject *borrowed_list_item_del(PyObject *self, PyObject *list)
{
    PyObject *item = PyList_GetItem(list, 0);         /* @s2-origin */
    if (item == NULL)
        return NULL;
    PyList_SetItem(list, 1, PyLong_FromLong(42));     /* old item's __del__ runs here */
    PyObject *r = PyObject_Repr(item);                /* @s2-culprit */
    Py_XDECREF(r);
    Py_RETURN_NONE;
}

/* 3. Py_DECREF(Py_None) without an INCREF, once per call until None's count runs out
 * (3.11 and earlier: "deallocating None"; 3.12+: None is immortal, nothing happens). */
static PyObject *decref_none(PyObject *self, PyObject *arg)
{
    long n = PyLong_AsLong(arg);
    for (long i = 0; i < n; i++)
        Py_DECREF(Py_None);                           /* @s3-culprit */
    return PyLong_FromLong(n);
}

/* 4. DECREF of an item PyList_SetItem already stole. */
static PyObject *stolen_then_decref(PyObject *self, PyObject *unused)
{
    PyObject *list = PyList_New(1);
    PyObject *item = PyBytes_FromString("a stolen item");
    if (list == NULL || item == NULL)
        return NULL;
    PyList_SetItem(list, 0, item);                    /* @s4-origin */
    Py_DECREF(item);                                  /* @s4-culprit */
    PyObject *r = PyObject_Repr(list);                /* the list's repr reads the freed item */
    Py_XDECREF(r);
    Py_DECREF(list);
    Py_RETURN_NONE;
}

/* 5. A borrowed item kept across Py_BEGIN_ALLOW_THREADS: another thread clears the list
 * while the GIL is released. */
static volatile int list_cleared;

static PyObject *mark_cleared(PyObject *self, PyObject *unused)
{
    list_cleared = 1;
    Py_RETURN_NONE;
}

static PyObject *borrowed_across_gil_release(PyObject *self, PyObject *list)
{
    PyObject *item = PyList_GetItem(list, 0);         /* @s5-origin */
    if (item == NULL)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; i < 5000 && !list_cleared; i++)
        usleep(1000);
    Py_END_ALLOW_THREADS
    PyObject *r = PyObject_Repr(item);                /* @s5-culprit */
    Py_XDECREF(r);
    Py_RETURN_NONE;
}

/* Control: correct reference handling. */
static PyObject *correct(PyObject *self, PyObject *list)
{
    PyObject *item = PyList_GetItem(list, 0);
    if (item == NULL)
        return NULL;
    Py_INCREF(item);                                  /* owned across the store */
    PyList_SetItem(list, 1, PyLong_FromLong(42));
    PyObject *r = PyObject_Repr(item);
    Py_DECREF(item);
    return r;
}

/* Control: a NULL dereference, not a reference-count bug. */
static PyObject *null_deref(PyObject *self, PyObject *arg)
{
    PyObject *missing = PyDict_GetItemString(arg, "no such key"); /* NULL */
    return PyLong_FromSsize_t(Py_REFCNT(missing));                /* @c2-crash */
}

static PyMethodDef methods[] = {
    {"borrowed_tuple_item", borrowed_tuple_item, METH_NOARGS, NULL},
    {"borrowed_list_item_del", borrowed_list_item_del, METH_O, NULL},
    {"decref_none", decref_none, METH_O, NULL},
    {"stolen_then_decref", stolen_then_decref, METH_NOARGS, NULL},
    {"borrowed_across_gil_release", borrowed_across_gil_release, METH_O, NULL},
    {"mark_cleared", mark_cleared, METH_NOARGS, NULL},
    {"correct", correct, METH_O, NULL},
    {"null_deref", null_deref, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "demoext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_demoext(void)
{
    return PyModule_Create(&module);
}
