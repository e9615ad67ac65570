/*
 * steal_tuple_cleanup: parse_pair("key=value") -> ("key", "value"). The cleanup path
 * releases both strings, though the first was already stolen by PyTuple_SET_ITEM when
 * the second fails to decode: the tuple's first item is over-released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *
parse_pair(PyObject *self, PyObject *arg)
{
    const char *s, *eq;
    Py_ssize_t len;
    PyObject *pair, *key = NULL, *value = NULL;

    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "parse_pair() needs bytes");
        return NULL;
    }
    s = PyBytes_AS_STRING(arg);
    len = PyBytes_GET_SIZE(arg);
    eq = memchr(s, '=', len);
    if (eq == NULL)
        return PyErr_Format(PyExc_ValueError, "no '=' in %R", arg);
    pair = PyTuple_New(2);
    if (pair == NULL)
        return NULL;
    key = PyUnicode_DecodeUTF8(s, eq - s, "strict");
    if (key == NULL)
        goto error;
    PyTuple_SET_ITEM(pair, 0, key);                                  /* @origin */
#ifdef FIXED
    key = NULL;
#endif
    value = PyUnicode_DecodeUTF8(eq + 1, len - (eq + 1 - s), "strict");
    if (value == NULL)
        goto error;
    PyTuple_SET_ITEM(pair, 1, value);
    return pair;

error:
    Py_XDECREF(key);                                                  /* @culprit */
    Py_DECREF(pair);
    return NULL;
}

static PyMethodDef pairs_methods[] = {
    {"parse_pair", parse_pair, METH_O, "parse_pair(b'key=value') -> ('key', 'value')"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef pairs_module = {
    PyModuleDef_HEAD_INIT, "steal_tuple_cleanup", NULL, -1, pairs_methods,
};

PyMODINIT_FUNC
PyInit_steal_tuple_cleanup(void)
{
    return PyModule_Create(&pairs_module);
}
