/*
 * _speedups — the small leaky package of `make demo-leaks` (demo/leaks/run.sh): an encoder
 * with a fast path in C, built with pyref's flags and checked by bin/pyref-run under its
 * own pytest suite (demo/leaks/tests). encode_dict leaks a reference to each value it
 * iterates over; -DFIXED builds the corrected version. encode_list is correct, and
 * intern_key keeps a cache (the first call of a key stores it: not a leak).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* "k=v;k=v;...": the str() of each key and value, joined. */
static PyObject *encode_dict(PyObject *self, PyObject *dict)
{
    PyObject *it, *key, *parts = PyList_New(0);
    if (parts == NULL)
        return NULL;
    it = PyObject_GetIter(dict);
    if (it == NULL)
        goto error;
    while ((key = PyIter_Next(it)) != NULL) {
        PyObject *value = PyObject_GetItem(dict, key);
        PyObject *item = value ? PyUnicode_FromFormat("%S=%S", key, value) : NULL;
#ifdef FIXED
        Py_XDECREF(value);
#endif
        Py_DECREF(key);
        if (item == NULL || PyList_Append(parts, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        goto error;
    PyObject *sep = PyUnicode_FromString(";");
    PyObject *out = sep ? PyUnicode_Join(sep, parts) : NULL;
    Py_XDECREF(sep);
    Py_DECREF(parts);
    return out;
error:
    Py_XDECREF(it);
    Py_DECREF(parts);
    return NULL;
}

/* ",".join(map(str, items)) */
static PyObject *encode_list(PyObject *self, PyObject *list)
{
    PyObject *strs = PyList_New(0), *sep = NULL, *out = NULL;
    if (strs == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_Size(list); i++) {
        PyObject *s = PyObject_Str(PyList_GET_ITEM(list, i));
        if (s == NULL || PyList_Append(strs, s) < 0) {
            Py_XDECREF(s);
            goto done;
        }
        Py_DECREF(s);
    }
    sep = PyUnicode_FromString(",");
    if (sep != NULL)
        out = PyUnicode_Join(sep, strs);
done:
    Py_XDECREF(sep);
    Py_DECREF(strs);
    return out;
}

static PyObject *cache;     /* interned keys, kept for the module's life */

/* The one cached copy of a key: stored on first sight (a cache, not a leak). */
static PyObject *intern_key(PyObject *self, PyObject *key)
{
    if (cache == NULL && (cache = PyDict_New()) == NULL)
        return NULL;
    PyObject *hit = PyDict_GetItemWithError(cache, key);
    if (hit == NULL) {
        if (PyErr_Occurred() || PyDict_SetItem(cache, key, key) < 0)
            return NULL;
        hit = key;
    }
    return Py_NewRef(hit);
}

static PyMethodDef methods[] = {
    {"encode_dict", encode_dict, METH_O, "encode a dict as k=v;k=v"},
    {"encode_list", encode_list, METH_O, "encode a list as a,b,c"},
    {"intern_key", intern_key, METH_O, "the cached copy of a key"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&moduledef);
}
