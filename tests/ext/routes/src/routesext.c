/*
 * routesext — the smallest extension that proves a build route goes through pyref's shim.
 * tests/system/test_build_routes.py and tests/system/test_install.py build it with plain gcc, setuptools
 * (setup.py), meson and meson-python, unchanged: only the flags from `pyref-config` differ.
 * `churn(obj, n)` makes n INCREF/DECREF pairs on obj at the @churn-* lines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *churn(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On", &obj, &n))
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(obj); /* @churn-incref */
        Py_DECREF(obj); /* @churn-decref */
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"churn", churn, METH_VARARGS, "churn(obj, n): n INCREF/DECREF pairs on obj."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "routesext", "pyref build-route test extension.", -1, methods,
};

PyMODINIT_FUNC PyInit_routesext(void)
{
    return PyModule_Create(&module);
}
