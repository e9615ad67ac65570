/*
 * leak_iter_next: index_of(iterable, value) walks an iterator and returns the position of
 * the first item equal to value. The `break` that leaves the loop on a match (or an error
 * of the comparison) keeps the item PyIter_Next returned: one reference leaked per search
 * that finds something.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
index_of(PyObject *self, PyObject *args)
{
    PyObject *iterable, *value, *it, *item;
    Py_ssize_t i = 0;
    int found;

    if (!PyArg_ParseTuple(args, "OO:index_of", &iterable, &value))
        return NULL;
    it = PyObject_GetIter(iterable);
    if (it == NULL)
        return NULL;
    while ((item = PyIter_Next(it)) != NULL) {                 /* @acquire */
        int eq = PyObject_RichCompareBool(item, value, Py_EQ);
        if (eq != 0)
            break;                                              /* @lost */
        Py_DECREF(item);
        i++;
    }
    Py_DECREF(it);
    found = item != NULL;
#ifdef FIXED
    Py_XDECREF(item);
#endif
    if (PyErr_Occurred())
        return NULL;
    if (!found) {
        PyErr_SetString(PyExc_ValueError, "index_of(): value not found");
        return NULL;
    }
    return PyLong_FromSsize_t(i);
}

static PyMethodDef search_methods[] = {
    {"index_of", index_of, METH_VARARGS, "index_of(iterable, value) -> int"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef search_module = {
    PyModuleDef_HEAD_INIT, "leak_iter_next", NULL, -1, search_methods,
};

PyMODINIT_FUNC
PyInit_leak_iter_next(void)
{
    return PyModule_Create(&search_module);
}
