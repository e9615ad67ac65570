/*
 * myext — the extension the README's build lines name (myext.c, setup.py, meson.build):
 * tests/system/test_readme.py builds it with each of those lines, as written, from a clean
 * clone. Nothing in it knows about pyref.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* touch(o): takes a reference to o and releases it. */
static PyObject *touch(PyObject *self, PyObject *o)
{
    Py_INCREF(o);
    Py_DECREF(o);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"touch", touch, METH_O, "Take a reference to the argument and release it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "myext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_myext(void)
{
    return PyModule_Create(&module);
}
