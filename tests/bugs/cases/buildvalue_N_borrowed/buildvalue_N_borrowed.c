/*
 * buildvalue_N_borrowed: swap_pair((a, b)) -> (b, a). Py_BuildValue's "N" hands over a
 * reference it steals, but the items are borrowed from the argument tuple
 * (PyTuple_GET_ITEM): the result takes references nobody gave it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef FIXED
#define SWAPPED "(OO)"
#else
#define SWAPPED "(NN)"
#endif

static PyObject *
swap_pair(PyObject *self, PyObject *pair)
{
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_TypeError, "swap_pair() needs a 2-tuple");
        return NULL;
    }
    PyObject *first = PyTuple_GET_ITEM(pair, 0);                      /* @origin */
    PyObject *second = PyTuple_GET_ITEM(pair, 1);   /* @origin-second */
    return Py_BuildValue(SWAPPED, second, first);                      /* @culprit */
}

static PyMethodDef pair_methods[] = {
    {"swap_pair", swap_pair, METH_O, "swap_pair((a, b)) -> (b, a)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef pair_module = {
    PyModuleDef_HEAD_INIT, "buildvalue_N_borrowed", NULL, -1, pair_methods,
};

PyMODINIT_FUNC
PyInit_buildvalue_N_borrowed(void)
{
    return PyModule_Create(&pair_module);
}
