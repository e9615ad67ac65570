/*
 * premature_decref_fast: mean(values) averages any iterable of numbers through
 * PySequence_Fast. The fast sequence is released as soon as its item array is taken, but
 * the array is read afterwards. For a list argument PySequence_Fast returns the list
 * itself, which the caller keeps alive, so the bug only shows for other iterables: their
 * fast sequence is a new list, freed with its items before the loop reads them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
mean(PyObject *self, PyObject *values)
{
    PyObject *fast = PySequence_Fast(values, "mean() needs an iterable");     /* @origin */
    if (fast == NULL)
        return NULL;
    Py_ssize_t i, n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
#ifndef FIXED
    Py_DECREF(fast);                                                   /* @culprit */
#endif
    if (n == 0) {
#ifdef FIXED
        Py_DECREF(fast);
#endif
        PyErr_SetString(PyExc_ValueError, "mean() of no values");
        return NULL;
    }
    double total = 0.0;
    for (i = 0; i < n; i++) {
        double v = PyFloat_AsDouble(items[i]);                          /* @use */
        if (v == -1.0 && PyErr_Occurred()) {
#ifdef FIXED
            Py_DECREF(fast);
#endif
            return NULL;
        }
        total += v;
    }
#ifdef FIXED
    Py_DECREF(fast);
#endif
    return PyFloat_FromDouble(total / n);
}

static PyMethodDef stats_methods[] = {
    {"mean", mean, METH_O, "mean(values) -> float"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef stats_module = {
    PyModuleDef_HEAD_INIT, "premature_decref_fast", NULL, -1, stats_methods,
};

PyMODINIT_FUNC
PyInit_premature_decref_fast(void)
{
    return PyModule_Create(&stats_module);
}
