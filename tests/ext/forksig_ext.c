/*
 * forksig_ext.c — a traced extension for tests/gdb/test_fork_signal.py: reference-count
 * transitions from the main thread, from a worker thread, from a fork child, and from a
 * C signal handler that interrupts the main thread's own transitions.
 *
 *   churn(obj, n, spin)   n times: Py_INCREF(obj), spin a little, Py_DECREF(obj)
 *   hammer(obj, usec)     installs a SIGALRM handler that does Py_INCREF/Py_DECREF on obj,
 *                         and an interval timer firing every usec microseconds
 *   counts()              (handler calls, its records written, its records dropped), the
 *                         last two measured by the handler itself from its thread's head
 *                         and lost counters around its two transitions
 *   stop()                stops the timer; returns counts()
 *   crash()               abort(): the kernel writes a core
 *
 * Arguments are taken with METH_FASTCALL, not PyArg_ParseTuple, so the ring holds only the
 * transitions written here (plus whatever the shim records for PyLong_FromLong & co.).
 * Site lines are named by their @marker comments (tests name lines by marker).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static PyObject *handler_obj;
static volatile long h_calls, h_written, h_dropped;

/* The handler runs on the main thread, possibly inside one of churn()'s transitions, whose
 * record the re-entry guard protects: the handler's record is then dropped and counted in
 * the thread's `lost`. The object is one only the handler touches, so its count is safe. */
static void on_alarm(int sig)
{
    (void)sig;
    struct pyref_thread *t = pyref_tls_thread;
    if (t == &pyref_thread_none || handler_obj == NULL)
        return;
    uint64_t head = t->head, lost = t->lost;
    Py_INCREF(handler_obj); /* @handler-incref */
    Py_DECREF(handler_obj); /* @handler-decref */
    h_written += (long)(t->head - head);
    h_dropped += (long)(t->lost - lost);
    h_calls++;
}

static PyObject *churn(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "churn(obj, n, spin)");
        return NULL;
    }
    PyObject *obj = args[0];
    long n = PyLong_AsLong(args[1]), spin = PyLong_AsLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    for (long i = 0; i < n; i++) {
        Py_INCREF(obj); /* @churn-incref */
        for (volatile long k = 0; k < spin; k++)
            ;
        Py_DECREF(obj); /* @churn-decref */
    }
    return PyLong_FromLong(n);
}

static PyObject *counts(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return Py_BuildValue("(lll)", (long)h_calls, (long)h_written, (long)h_dropped);
}

static PyObject *hammer(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 || handler_obj != NULL) {
        PyErr_SetString(PyExc_TypeError, "hammer(obj, usec), once");
        return NULL;
    }
    long usec = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    Py_INCREF(args[0]); /* @hammer-keep */
    handler_obj = args[0];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, usec}, {0, usec}};
    setitimer(ITIMER_REAL, &it, NULL);
    return PyLong_FromLong(usec);
}

static PyObject *stop(PyObject *self, PyObject *unused)
{
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_IGN);
    return counts(self, unused);
}

static PyObject *crash(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    abort();
}

static PyMethodDef methods[] = {
    {"churn", (PyCFunction)(void (*)(void))churn, METH_FASTCALL, "churn(obj, n, spin)"},
    {"hammer", (PyCFunction)(void (*)(void))hammer, METH_FASTCALL, "hammer(obj, usec)"},
    {"counts", counts, METH_NOARGS, "counts() -> (calls, written, dropped)"},
    {"stop", stop, METH_NOARGS, "stop() -> counts()"},
    {"crash", crash, METH_NOARGS, "abort()"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "forksig_ext", NULL, -1, methods};

PyMODINIT_FUNC PyInit_forksig_ext(void)
{
    return PyModule_Create(&module);
}
