/*
 * leak_buildvalue_O: split_first("a.b.c") -> ("a", "b.c"). The head is a new reference
 * passed to Py_BuildValue with "O", which takes a reference of its own; the function's
 * reference is never released ("N" would hand it over): one leaked per call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#ifdef FIXED
#define PAIR "(Ns)"
#else
#define PAIR "(Os)"
#endif

static PyObject *
split_first(PyObject *self, PyObject *arg)
{
    Py_ssize_t len;
    const char *s = PyUnicode_AsUTF8AndSize(arg, &len);
    if (s == NULL)
        return NULL;
    const char *dot = memchr(s, '.', len);
    if (dot == NULL) {
        PyErr_Format(PyExc_ValueError, "no '.' in %R", arg);
        return NULL;
    }
    PyObject *head = PyUnicode_FromStringAndSize(s, dot - s);   /* @acquire */
    if (head == NULL)
        return NULL;
    return Py_BuildValue(PAIR, head, dot + 1);                   /* @culprit */
}

static PyMethodDef names_methods[] = {
    {"split_first", split_first, METH_O, "split_first('a.b.c') -> ('a', 'b.c')"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef names_module = {
    PyModuleDef_HEAD_INIT, "leak_buildvalue_O", NULL, -1, names_methods,
};

PyMODINIT_FUNC
PyInit_leak_buildvalue_O(void)
{
    return PyModule_Create(&names_module);
}
