/*
 * uaf_eq_callback: unique(lst) -> the items of lst without repeats, in order, for items
 * that need not be hashable (pairwise ==). The item is borrowed from the list; the
 * comparison runs the items' __eq__, which may change the list and free the item before
 * it is appended.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
unique(PyObject *self, PyObject *lst)
{
    if (!PyList_Check(lst)) {
        PyErr_SetString(PyExc_TypeError, "unique() needs a list");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lst); i++) {
        PyObject *item = PyList_GET_ITEM(lst, i);                    /* @origin */
        int seen = 0;
#ifdef FIXED
        Py_INCREF(item);
#endif
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(out) && !seen; j++) {
            seen = PyObject_RichCompareBool(PyList_GET_ITEM(out, j), item, Py_EQ);   /* @frees */
            if (seen < 0)
                goto error;
        }
        if (!seen && PyList_Append(out, item) < 0)                    /* @culprit */
            goto error;
#ifdef FIXED
        Py_DECREF(item);
#endif
    }
    return out;

error:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef uniq_methods[] = {
    {"unique", unique, METH_O, "unique(lst) -> list without repeated items"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef uniq_module = {
    PyModuleDef_HEAD_INIT, "uaf_eq_callback", NULL, -1, uniq_methods,
};

PyMODINIT_FUNC
PyInit_uaf_eq_callback(void)
{
    return PyModule_Create(&uniq_module);
}
