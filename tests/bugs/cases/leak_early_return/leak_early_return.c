/*
 * leak_early_return: call_with_timeout(func, arg, timeout) calls func(arg, timeout). When
 * the call raises, the early `return NULL` leaves without releasing the argument tuple:
 * one tuple leaked per failed call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
call_with_timeout(PyObject *self, PyObject *args)
{
    PyObject *func, *arg, *t, *callargs, *result;
    double timeout;

    if (!PyArg_ParseTuple(args, "OOd:call_with_timeout", &func, &arg, &timeout))
        return NULL;
    if (timeout < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be non-negative");
        return NULL;
    }
    t = PyFloat_FromDouble(timeout);
    if (t == NULL)
        return NULL;
    callargs = PyTuple_Pack(2, arg, t);                        /* @acquire */
    Py_DECREF(t);
    if (callargs == NULL)
        return NULL;
    result = PyObject_Call(func, callargs, NULL);
    if (result == NULL) {
#ifdef FIXED
        Py_DECREF(callargs);
#endif
        return NULL;                                            /* @lost */
    }
    Py_DECREF(callargs);
    return result;
}

static PyMethodDef timeout_methods[] = {
    {"call_with_timeout", call_with_timeout, METH_VARARGS,
     "call_with_timeout(func, arg, timeout) -> func(arg, timeout)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef timeout_module = {
    PyModuleDef_HEAD_INIT, "leak_early_return", NULL, -1, timeout_methods,
};

PyMODINIT_FUNC
PyInit_leak_early_return(void)
{
    return PyModule_Create(&timeout_module);
}
