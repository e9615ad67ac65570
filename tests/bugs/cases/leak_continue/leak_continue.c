/*
 * leak_continue: total_size(seq) adds up len() of the items of a sequence that are
 * sequences themselves and skips the others. The `continue` that skips them also skips
 * the release of the item PySequence_GetItem returned: one reference leaked per skipped
 * item.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
total_size(PyObject *self, PyObject *args)
{
    PyObject *seq;
    Py_ssize_t i, n, total = 0;

    if (!PyArg_ParseTuple(args, "O:total_size", &seq))
        return NULL;
    n = PySequence_Size(seq);
    if (n < 0)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *item = PySequence_GetItem(seq, i);          /* @acquire */
        if (item == NULL)
            return NULL;
        if (!PySequence_Check(item) || PyDict_Check(item)) {
#ifdef FIXED
            Py_DECREF(item);
#endif
            continue;                                         /* @lost */
        }
        Py_ssize_t len = PySequence_Size(item);
        Py_DECREF(item);
        if (len < 0)
            return NULL;
        total += len;
    }
    return PyLong_FromSsize_t(total);
}

static PyMethodDef sizes_methods[] = {
    {"total_size", total_size, METH_VARARGS, "total_size(seq) -> sum of len() of its sequences"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sizes_module = {
    PyModuleDef_HEAD_INIT, "leak_continue", NULL, -1, sizes_methods,
};

PyMODINIT_FUNC
PyInit_leak_continue(void)
{
    return PyModule_Create(&sizes_module);
}
