/* Threads doing correct INCREF/DECREF pairs at the same time, for the reader's order
 * across threads: churn(obj, n) takes and drops n references to obj, each a traced
 * Py_INCREF then Py_DECREF, the pairs balanced. The threads' records race on the ring's
 * relaxed shared seq counter (a thread's consecutive records can get decreasing seqs):
 * - free-threaded builds run the callers in parallel with their thread states attached;
 * - release builds with the GIL drop it around the loop (Py_BEGIN_ALLOW_THREADS): each
 *   thread churns its own object, so no count is shared between threads;
 * - debug builds with the GIL keep it: their Py_INCREF adds to the interpreter's reference
 *   total through the attached thread state (serialised, the seqs then rise). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *churn(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t n;
    (void)self;
    if (!PyArg_ParseTuple(args, "On", &obj, &n))
        return NULL;
#if !defined(Py_GIL_DISABLED) && !defined(Py_REF_DEBUG)
    Py_BEGIN_ALLOW_THREADS
#endif
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(obj);             /* @churn-incref */
        Py_DECREF(obj);             /* @churn-decref */
    }
#if !defined(Py_GIL_DISABLED) && !defined(Py_REF_DEBUG)
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"churn", churn, METH_VARARGS, "churn(obj, n): n balanced INCREF/DECREF pairs"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "threads_ext", NULL, 0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_threads_ext(void)
{
    return PyModuleDef_Init(&module);
}
