/*
 * borrowed_decref_branch: get_setting(settings, key, default=None) -> str(value). When
 * the key is missing the default is INCREF'd and owned; when it is present the value is
 * borrowed from the dict. The common exit releases `value` on both paths: the found
 * value is over-released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
get_setting(PyObject *self, PyObject *args)
{
    PyObject *settings, *key, *dflt = Py_None, *value, *text;

    if (!PyArg_ParseTuple(args, "O!U|O:get_setting", &PyDict_Type, &settings, &key, &dflt))
        return NULL;
    value = PyDict_GetItemWithError(settings, key);               /* @origin */
    if (value == NULL) {
        if (PyErr_Occurred())
            return NULL;
        value = dflt;
        Py_INCREF(value);
    }
#ifdef FIXED
    else
        Py_INCREF(value);
#endif
    text = PyObject_Str(value);
    Py_DECREF(value);                                              /* @culprit */
    return text;
}

static PyMethodDef settings_methods[] = {
    {"get_setting", get_setting, METH_VARARGS, "get_setting(settings, key, default=None) -> str"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef settings_module = {
    PyModuleDef_HEAD_INIT, "borrowed_decref_branch", NULL, -1, settings_methods,
};

PyMODINIT_FUNC
PyInit_borrowed_decref_branch(void)
{
    return PyModule_Create(&settings_module);
}
