/*
 * steal_list_setitem: scaled(values, factor) -> [v * factor for v in values] as a list of
 * floats. PyList_SetItem steals the new float; the loop still releases it afterwards,
 * as it would after PyList_Append: every item of the result is over-released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
scaled(PyObject *self, PyObject *args)
{
    PyObject *values, *fast, *result;
    double factor;
    Py_ssize_t i, n;

    if (!PyArg_ParseTuple(args, "Od:scaled", &values, &factor))
        return NULL;
    fast = PySequence_Fast(values, "scaled() needs a sequence");
    if (fast == NULL)
        return NULL;
    n = PySequence_Fast_GET_SIZE(fast);
    result = PyList_New(n);
    if (result == NULL) {
        Py_DECREF(fast);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (v == -1.0 && PyErr_Occurred())
            goto error;
        PyObject *item = PyFloat_FromDouble(v * factor);
        if (item == NULL)
            goto error;
        PyList_SetItem(result, i, item);                          /* @origin */
#ifndef FIXED
        Py_DECREF(item);                                           /* @culprit */
#endif
    }
    Py_DECREF(fast);
    return result;

error:
    Py_DECREF(fast);
    Py_DECREF(result);
    return NULL;
}

static PyMethodDef vec_methods[] = {
    {"scaled", scaled, METH_VARARGS, "scaled(values, factor) -> list of floats"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef vec_module = {
    PyModuleDef_HEAD_INIT, "steal_list_setitem", NULL, -1, vec_methods,
};

PyMODINIT_FUNC
PyInit_steal_list_setitem(void)
{
    return PyModule_Create(&vec_module);
}
