/*
 * steal_setitem_failed: put(lst, index, value) stores str(value) at lst[index]. When
 * PyList_SetItem fails (index out of range) the error path releases the item, but
 * PyList_SetItem steals it even when it fails: it was already released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
put(PyObject *self, PyObject *args)
{
    PyObject *lst, *value, *text;
    Py_ssize_t index;

    if (!PyArg_ParseTuple(args, "O!nO:put", &PyList_Type, &lst, &index, &value))
        return NULL;
    text = PyObject_Str(value);
    if (text == NULL)
        return NULL;
    if (PyList_SetItem(lst, index, text) < 0) {                      /* @origin */
#ifndef FIXED
        Py_DECREF(text);                                              /* @culprit */
#endif
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef slots_methods[] = {
    {"put", put, METH_VARARGS, "put(lst, index, value): lst[index] = str(value)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef slots_module = {
    PyModuleDef_HEAD_INIT, "steal_setitem_failed", NULL, -1, slots_methods,
};

PyMODINIT_FUNC
PyInit_steal_setitem_failed(void)
{
    return PyModule_Create(&slots_module);
}
