/*
 * ok_callbacks (control): the patterns of the corpus written correctly. sort_by(lst, key)
 * holds each borrowed item with an INCREF across key(item) (which may change the list);
 * pairs(mapping) builds (key, value) tuples with Py_BuildValue "N" for the new references
 * and "O" for the borrowed ones; squares(n) fills a list with PyList_SetItem and never
 * touches the stolen items again; first_str(iterable) leaves a PyIter_Next loop early
 * and releases its item on every path. Correct code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
sort_by(PyObject *self, PyObject *args)
{
    PyObject *lst, *key, *decorated;
    if (!PyArg_ParseTuple(args, "O!O:sort_by", &PyList_Type, &lst, &key))
        return NULL;
    decorated = PyList_New(0);
    if (decorated == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lst); i++) {
        PyObject *item = PyList_GET_ITEM(lst, i);
        Py_INCREF(item);
        PyObject *k = PyObject_CallOneArg(key, item);
        PyObject *pair = k ? Py_BuildValue("(NnO)", k, i, item) : NULL;
        Py_DECREF(item);
        if (pair == NULL || PyList_Append(decorated, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(decorated);
            return NULL;
        }
        Py_DECREF(pair);
    }
    if (PyList_Sort(decorated) < 0) {
        Py_DECREF(decorated);
        return NULL;
    }
    PyObject *out = PyList_New(PyList_GET_SIZE(decorated));
    if (out == NULL) {
        Py_DECREF(decorated);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(decorated); i++) {
        PyObject *item = PyTuple_GET_ITEM(PyList_GET_ITEM(decorated, i), 2);
        Py_INCREF(item);
        PyList_SET_ITEM(out, i, item);
    }
    Py_DECREF(decorated);
    return out;
}

static PyObject *
pairs(PyObject *self, PyObject *mapping)
{
    PyObject *keys = PyMapping_Keys(mapping);
    if (keys == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < PyList_GET_SIZE(keys); i++) {
        PyObject *k = PyList_GET_ITEM(keys, i);
        PyObject *v = PyObject_GetItem(mapping, k);
        PyObject *pair = v ? Py_BuildValue("(ON)", k, v) : NULL;
        if (pair == NULL || PyList_Append(out, pair) < 0)
            Py_CLEAR(out);
        Py_XDECREF(pair);
    }
    Py_DECREF(keys);
    return out;
}

static PyObject *
squares(PyObject *self, PyObject *arg)
{
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n < 0)
        return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_ValueError, "negative");
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *sq = PyLong_FromSsize_t(1000 + i * i);
        if (sq == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SetItem(out, i, sq);
    }
    return out;
}

static PyObject *
first_str(PyObject *self, PyObject *iterable)
{
    PyObject *it = PyObject_GetIter(iterable), *item;
    if (it == NULL)
        return NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        if (PyUnicode_Check(item))
            break;
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (item == NULL && !PyErr_Occurred())
        Py_RETURN_NONE;
    return item;
}

static PyMethodDef cb_methods[] = {
    {"sort_by", sort_by, METH_VARARGS, "sort_by(lst, key) -> sorted copy"},
    {"pairs", pairs, METH_O, "pairs(mapping) -> [(key, value)]"},
    {"squares", squares, METH_O, "squares(n) -> [1000 + i*i]"},
    {"first_str", first_str, METH_O, "first_str(iterable) -> the first str, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef cb_module = {
    PyModuleDef_HEAD_INIT, "ok_callbacks", NULL, -1, cb_methods,
};

PyMODINIT_FUNC
PyInit_ok_callbacks(void)
{
    return PyModule_Create(&cb_module);
}
