/*
 * leak_none_result: for_each(callback, iterable) calls callback(item) for each item and
 * returns how many it called. The callback's result is never released. The callbacks
 * return None, so on 3.11 and earlier every call leaks a reference to None (3.12+:
 * None is immortal and the leak is harmless).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
for_each(PyObject *self, PyObject *args)
{
    PyObject *callback, *iterable, *it, *item;
    Py_ssize_t n = 0;

    if (!PyArg_ParseTuple(args, "OO:for_each", &callback, &iterable))
        return NULL;
    if (!PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "for_each(): callback is not callable");
        return NULL;
    }
    it = PyObject_GetIter(iterable);
    if (it == NULL)
        return NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *res = PyObject_CallOneArg(callback, item);     /* @acquire */
        Py_DECREF(item);
        if (res == NULL) {
            Py_DECREF(it);
            return NULL;
        }
#ifdef FIXED
        Py_DECREF(res);
#endif
        n++;
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    return PyLong_FromSsize_t(n);
}

static PyMethodDef each_methods[] = {
    {"for_each", for_each, METH_VARARGS, "for_each(callback, iterable) -> calls made"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef each_module = {
    PyModuleDef_HEAD_INIT, "leak_none_result", NULL, -1, each_methods,
};

PyMODINIT_FUNC
PyInit_leak_none_result(void)
{
    return PyModule_Create(&each_module);
}
