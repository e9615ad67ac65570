/*
 * uaf_hash_callback: count(lst) -> {item: occurrences}. Each item is borrowed from the
 * list; looking it up in the dict runs its __hash__, which may change the list and free
 * the item before the count is stored under it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
count(PyObject *self, PyObject *lst)
{
    if (!PyList_Check(lst)) {
        PyErr_SetString(PyExc_TypeError, "count() needs a list");
        return NULL;
    }
    PyObject *counts = PyDict_New();
    if (counts == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lst); i++) {
        PyObject *item = PyList_GET_ITEM(lst, i);                    /* @origin */
#ifdef FIXED
        Py_INCREF(item);
#endif
        PyObject *old = PyDict_GetItemWithError(counts, item);   /* @frees */
        long n = old ? PyLong_AsLong(old) : 0;
        if ((old == NULL && PyErr_Occurred()) || (n == -1 && PyErr_Occurred()))
            goto error;
        PyObject *newcount = PyLong_FromLong(n + 1);
        if (newcount == NULL)
            goto error;
        int rc = PyDict_SetItem(counts, item, newcount);             /* @culprit */
        Py_DECREF(newcount);
#ifdef FIXED
        Py_DECREF(item);
#endif
        if (rc < 0)
            goto error;
    }
    return counts;

error:
    Py_DECREF(counts);
    return NULL;
}

static PyMethodDef count_methods[] = {
    {"count", count, METH_O, "count(lst) -> {item: occurrences}"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef count_module = {
    PyModuleDef_HEAD_INIT, "uaf_hash_callback", NULL, -1, count_methods,
};

PyMODINIT_FUNC
PyInit_uaf_hash_callback(void)
{
    return PyModule_Create(&count_module);
}
