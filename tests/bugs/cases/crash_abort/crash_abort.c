/*
 * crash_abort (control, not a refcount bug): a fixed-size ring of doubles whose
 * invariant check calls abort() when push() has run past its capacity because of an
 * off-by-one in the wrap-around.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>

#define CAPACITY 8

typedef struct {
    PyObject_HEAD
    double values[CAPACITY];
    Py_ssize_t head, count;
} RingObject;

static void
check_invariants(RingObject *r)
{
    if (r->head < 0 || r->head >= CAPACITY || r->count < 0 || r->count > CAPACITY) {
        fprintf(stderr, "ring: corrupt state head=%zd count=%zd\n", r->head, r->count);
        abort();                                                    /* @crash */
    }
}

static PyObject *
ring_push(RingObject *self, PyObject *arg)
{
    double v = PyFloat_AsDouble(arg);
    if (v == -1.0 && PyErr_Occurred())
        return NULL;
    self->values[(self->head + self->count) % CAPACITY] = v;
    if (self->count < CAPACITY)
        self->count++;
    else if (++self->head > CAPACITY)   /* should wrap at CAPACITY */
        self->head = 0;
    check_invariants(self);
    Py_RETURN_NONE;
}

static PyObject *
ring_mean(RingObject *self, PyObject *unused)
{
    double total = 0;
    for (Py_ssize_t i = 0; i < self->count; i++)
        total += self->values[(self->head + i) % CAPACITY];
    return PyFloat_FromDouble(self->count ? total / self->count : 0.0);
}

static PyMethodDef ring_methods[] = {
    {"push", (PyCFunction)ring_push, METH_O, "push(x)"},
    {"mean", (PyCFunction)ring_mean, METH_NOARGS, "mean() of the last values"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Ring_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "crash_abort.Ring",
    .tp_basicsize = sizeof(RingObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_methods = ring_methods,
};

static struct PyModuleDef ring_module = {
    PyModuleDef_HEAD_INIT, "crash_abort", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_crash_abort(void)
{
    if (PyType_Ready(&Ring_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&ring_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Ring", (PyObject *)&Ring_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
