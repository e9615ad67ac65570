/*
 * crash_stack_overflow (control, not a refcount bug): depth(obj) measures how deeply
 * lists nest by recursing in C without Py_EnterRecursiveCall; a list that contains
 * itself recurses until the C stack overflows (SIGSEGV on the guard page).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static Py_ssize_t
nesting(PyObject *obj)
{
    if (!PyList_Check(obj))
        return 0;
    Py_ssize_t best = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(obj); i++) {
        Py_ssize_t d = nesting(PyList_GET_ITEM(obj, i));              /* @crash */
        if (d < 0)
            return -1;
        if (d > best)
            best = d;
    }
    return best + 1;
}

static PyObject *
depth(PyObject *self, PyObject *obj)
{
    Py_ssize_t d = nesting(obj);
    return d < 0 ? NULL : PyLong_FromSsize_t(d);
}

static PyMethodDef depth_methods[] = {
    {"depth", depth, METH_O, "depth(obj) -> how deeply lists nest in obj"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef depth_module = {
    PyModuleDef_HEAD_INIT, "crash_stack_overflow", NULL, -1, depth_methods,
};

PyMODINIT_FUNC
PyInit_crash_stack_overflow(void)
{
    return PyModule_Create(&depth_module);
}
