/*
 * leak_overwrite: describe(obj) formats "<type: text>" with str(obj), or says how long it is when
 * str() is too long, its length. Assigning the length's text to `text` overwrites the owned str() result
 * without releasing it: one reference leaked per long value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_TEXT 24

static PyObject *
describe(PyObject *self, PyObject *obj)
{
    PyObject *text = PyObject_Str(obj);                       /* @acquire */
    if (text == NULL)
        return NULL;
    if (PyUnicode_GET_LENGTH(text) > MAX_TEXT) {
        Py_ssize_t len = PyUnicode_GET_LENGTH(text);
#ifdef FIXED
        Py_DECREF(text);
#endif
        text = PyUnicode_FromFormat("%zd characters", len);   /* @lost */
        if (text == NULL)
            return NULL;
    }
    PyObject *result = PyUnicode_FromFormat("<%s: %U>", Py_TYPE(obj)->tp_name, text);
    Py_DECREF(text);
    return result;
}

static PyMethodDef describe_methods[] = {
    {"describe", describe, METH_O, "describe(obj) -> '<type: text>'"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef describe_module = {
    PyModuleDef_HEAD_INIT, "leak_overwrite", NULL, -1, describe_methods,
};

PyMODINIT_FUNC
PyInit_leak_overwrite(void)
{
    return PyModule_Create(&describe_module);
}
