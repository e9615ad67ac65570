/*
 * double_decref_helper: tokenize(text) -> list of the whitespace-separated words. The
 * helper push_owned() appends a token and releases it (it consumes the caller's
 * reference, as its comment says); tokenize() releases each token again afterwards.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Appends item to list and releases the caller's reference to item, even on failure.
 * Returns 0, or -1 with an exception set. */
static int
push_owned(PyObject *list, PyObject *item)
{
    int rc = PyList_Append(list, item);
    Py_DECREF(item);                                                 /* @release */
    return rc;
}

static PyObject *
tokenize(PyObject *self, PyObject *text)
{
    if (!PyUnicode_Check(text)) {
        PyErr_SetString(PyExc_TypeError, "tokenize() needs a str");
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(text), i = 0, start;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *tokens = PyList_New(0);
    if (tokens == NULL)
        return NULL;
    while (i < n) {
        while (i < n && Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)))
            i++;
        start = i;
        while (i < n && !Py_UNICODE_ISSPACE(PyUnicode_READ(kind, data, i)))
            i++;
        if (i == start)
            break;
        PyObject *tok = PyUnicode_Substring(text, start, i);          /* @origin */
        if (tok == NULL || push_owned(tokens, tok) < 0) {
            Py_DECREF(tokens);
            return NULL;
        }
#ifndef FIXED
        Py_DECREF(tok);                                               /* @culprit */
#endif
    }
    return tokens;
}

static PyMethodDef tok_methods[] = {
    {"tokenize", tokenize, METH_O, "tokenize(text) -> list of words"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef tok_module = {
    PyModuleDef_HEAD_INIT, "double_decref_helper", NULL, -1, tok_methods,
};

PyMODINIT_FUNC
PyInit_double_decref_helper(void)
{
    return PyModule_Create(&tok_module);
}
