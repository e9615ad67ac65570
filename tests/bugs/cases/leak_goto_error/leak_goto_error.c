/*
 * leak_goto_error: a record parser whose error path forgets one of its references.
 * parse_records(records) turns a sequence of mappings {"name": str, "value": int} into a
 * list of (name, value) tuples; a record whose value is not an int raises TypeError. The
 * `goto error` on that path skips the release of `name`: one reference leaked per bad
 * record.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
parse_records(PyObject *self, PyObject *records)
{
    PyObject *result = NULL, *name = NULL, *value = NULL, *row;
    Py_ssize_t i, n;

    n = PySequence_Length(records);
    if (n < 0)
        return NULL;
    result = PyList_New(0);
    if (result == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *rec = PySequence_GetItem(records, i);
        if (rec == NULL)
            goto error;
        name = PyMapping_GetItemString(rec, "name");           /* @acquire */
        value = name ? PyMapping_GetItemString(rec, "value") : NULL;
        Py_DECREF(rec);
        if (value == NULL)
            goto error;
        if (!PyLong_Check(value)) {
            PyErr_Format(PyExc_TypeError, "record %zd: value must be int, not %.100s",
                         i, Py_TYPE(value)->tp_name);
            goto error;                                         /* @lost */
        }
        row = PyTuple_Pack(2, name, value);
        Py_CLEAR(name);
        Py_CLEAR(value);
        if (row == NULL || PyList_Append(result, row) < 0) {
            Py_XDECREF(row);
            goto error;
        }
        Py_DECREF(row);
    }
    return result;

error:
#ifdef FIXED
    Py_XDECREF(name);
#endif
    Py_XDECREF(value);
    Py_DECREF(result);
    return NULL;
}

static PyMethodDef parser_methods[] = {
    {"parse_records", parse_records, METH_O, "parse_records(records) -> [(name, value)]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef parser_module = {
    PyModuleDef_HEAD_INIT, "leak_goto_error", "A record parser.", -1, parser_methods,
};

PyMODINIT_FUNC
PyInit_leak_goto_error(void)
{
    return PyModule_Create(&parser_module);
}
