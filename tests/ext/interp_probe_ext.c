/* An untraced extension for checking a prepared interpreter end to end (tests/
 * test_interpreters.py): it builds against the interpreter's headers, keeps one object
 * where a debugger finds it by name, and crashes on request. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

/* The object given to hold(), a strong reference kept until the crash. */
PyObject *interp_probe_held;

static PyObject *
hold(PyObject *self, PyObject *obj)
{
    Py_XSETREF(interp_probe_held, Py_NewRef(obj));
    Py_RETURN_NONE;
}

static PyObject *
crash(PyObject *self, PyObject *unused)
{
    abort();
}

static PyMethodDef methods[] = {
    {"hold", hold, METH_O, "Keep a strong reference to the object in interp_probe_held."},
    {"crash", crash, METH_NOARGS, "abort() the process."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "interp_probe_ext", NULL, 0, methods, slots,
};

PyMODINIT_FUNC
PyInit_interp_probe_ext(void)
{
    return PyModuleDef_Init(&module);
}
