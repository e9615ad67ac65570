/*
 * uaf_del_callback: update_changed(dst, src) copies src's items into dst and returns the
 * keys whose value changed. The key is borrowed from src by PyDict_Next; storing into
 * dst releases dst's old value, whose __del__ may delete the key from src and free it
 * before it is appended to the result.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
update_changed(PyObject *self, PyObject *args)
{
    PyObject *dst, *src, *key, *value, *changed;
    Py_ssize_t pos = 0;

    if (!PyArg_ParseTuple(args, "O!O!:update_changed", &PyDict_Type, &dst, &PyDict_Type, &src))
        return NULL;
    changed = PyList_New(0);
    if (changed == NULL)
        return NULL;
    while (PyDict_Next(src, &pos, &key, &value)) {                  /* @origin */
        PyObject *old = PyDict_GetItemWithError(dst, key);
        if (old == NULL && PyErr_Occurred())
            goto error;
        if (old == value)
            continue;
#ifdef FIXED
        Py_INCREF(key);
#endif
        if (PyDict_SetItem(dst, key, value) < 0)   /* @frees */
            goto error;
        int rc = PyList_Append(changed, key);                        /* @culprit */
#ifdef FIXED
        Py_DECREF(key);
#endif
        if (rc < 0)
            goto error;
    }
    return changed;

error:
    Py_DECREF(changed);
    return NULL;
}

static PyMethodDef dicts_methods[] = {
    {"update_changed", update_changed, METH_VARARGS, "update_changed(dst, src) -> changed keys"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef dicts_module = {
    PyModuleDef_HEAD_INIT, "uaf_del_callback", NULL, -1, dicts_methods,
};

PyMODINIT_FUNC
PyInit_uaf_del_callback(void)
{
    return PyModule_Create(&dicts_module);
}
