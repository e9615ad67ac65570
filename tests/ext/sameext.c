/*
 * sameext — counts reference transitions and reports Py_REFCNT after each, so a test can
 * compare a traced build with an untraced one: they must return identical lists.
 * Compiled as C and as C++, with and without PY_SSIZE_T_CLEAN and Py_LIMITED_API.
 */
#include <Python.h>

static PyObject *trace(PyObject *self, PyObject *arg)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    PyObject *probe = arg;
#define SNAP() PyList_Append(out, PyLong_FromSsize_t(Py_REFCNT(probe)))
    Py_INCREF(probe); SNAP();
    Py_XINCREF(probe); SNAP();
    PyObject *n = Py_NewRef(probe); SNAP();
    PyObject *x = Py_XNewRef(probe); SNAP();
    Py_DECREF(n); SNAP();
    Py_XDECREF(x); SNAP();
    Py_XDECREF(probe); SNAP();
    Py_DECREF(probe); SNAP();
    Py_INCREF(Py_None);
    Py_DECREF(Py_None);
#undef SNAP
    return out;
}

static PyMethodDef methods[] = {
    {"trace", trace, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sameext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_sameext(void)
{
    return PyModule_Create(&module);
}
