/*
 * borrowed_decref_tuple: join_path(*parts) -> "a/b/c". The loop fetched each part with
 * PySequence_GetItem once (a new reference); it now uses PyTuple_GetItem, a borrowed
 * one, and still releases every part: the argument tuple's items are over-released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
join_path(PyObject *self, PyObject *args)
{
    Py_ssize_t i, n = PyTuple_GET_SIZE(args);
    PyObject *sep, *parts, *result = NULL;

    parts = PyList_New(0);
    if (parts == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *part = PyTuple_GetItem(args, i);               /* @origin */
        if (part == NULL)
            goto done;
        if (!PyUnicode_Check(part)) {
            PyErr_Format(PyExc_TypeError, "part %zd is not a str", i);
            goto done;
        }
        if (PyUnicode_GET_LENGTH(part) > 0 && PyList_Append(parts, part) < 0)
            goto done;
#ifndef FIXED
        Py_DECREF(part);                                           /* @culprit */
#endif
    }
    sep = PyUnicode_FromString("/");
    if (sep != NULL) {
        result = PyUnicode_Join(sep, parts);
        Py_DECREF(sep);
    }
done:
    Py_DECREF(parts);
    return result;
}

static PyMethodDef path_methods[] = {
    {"join_path", join_path, METH_VARARGS, "join_path(*parts) -> 'a/b/c'"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef path_module = {
    PyModuleDef_HEAD_INIT, "borrowed_decref_tuple", NULL, -1, path_methods,
};

PyMODINIT_FUNC
PyInit_borrowed_decref_tuple(void)
{
    return PyModule_Create(&path_module);
}
