/*
 * borrowed_decref_dict: format_address(options) -> "host:port" from a dict of options.
 * The host comes from PyDict_GetItemString, a borrowed reference, and is released after
 * formatting as if it were owned: the dict's value is freed while the dict holds it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
format_address(PyObject *self, PyObject *args)
{
    PyObject *options, *host, *port, *result;
    long portnum;

    if (!PyArg_ParseTuple(args, "O!:format_address", &PyDict_Type, &options))
        return NULL;
    host = PyDict_GetItemString(options, "host");               /* @origin */
    port = PyDict_GetItemString(options, "port");
    if (port == NULL) {
        PyErr_SetString(PyExc_KeyError, "port");
        return NULL;
    }
    portnum = PyLong_AsLong(port);
    if (portnum == -1 && PyErr_Occurred())
        return NULL;
    if (portnum <= 0 || portnum > 65535)
        return PyErr_Format(PyExc_ValueError, "bad port %ld", portnum);
    if (host == NULL)
        return PyUnicode_FromFormat("localhost:%ld", portnum);
    result = PyUnicode_FromFormat("%S:%ld", host, portnum);
#ifndef FIXED
    Py_DECREF(host);                                              /* @culprit */
#endif
    return result;                                                /* @returned */
}

static PyMethodDef net_methods[] = {
    {"format_address", format_address, METH_VARARGS, "format_address(options) -> 'host:port'"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef net_module = {
    PyModuleDef_HEAD_INIT, "borrowed_decref_dict", NULL, -1, net_methods,
};

PyMODINIT_FUNC
PyInit_borrowed_decref_dict(void)
{
    return PyModule_Create(&net_module);
}
