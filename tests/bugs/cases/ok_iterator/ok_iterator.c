/*
 * ok_iterator (control): chunks(iterable, n) is an iterator type yielding tuples of n
 * items: it keeps the source iterator in a field, takes each item from PyIter_Next (a new
 * reference stolen by PyTuple_SET_ITEM), and releases what it holds in tp_dealloc.
 * Iterated to the end and abandoned half-way. Correct code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *source;               /* an iterator; NULL when exhausted */
    Py_ssize_t n;
} ChunksObject;

static PyObject *
chunks_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *iterable;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "On:chunks", &iterable, &n))
        return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "chunk size must be positive");
        return NULL;
    }
    PyObject *source = PyObject_GetIter(iterable);
    if (source == NULL)
        return NULL;
    ChunksObject *self = (ChunksObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_DECREF(source);
        return NULL;
    }
    self->source = source;
    self->n = n;
    return (PyObject *)self;
}

static int
chunks_traverse(ChunksObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->source);
    return 0;
}

static void
chunks_dealloc(ChunksObject *self)
{
    PyObject_GC_UnTrack(self);
    Py_XDECREF(self->source);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
chunks_next(ChunksObject *self)
{
    if (self->source == NULL)
        return NULL;
    PyObject *chunk = PyTuple_New(self->n);
    if (chunk == NULL)
        return NULL;
    Py_ssize_t i;
    for (i = 0; i < self->n; i++) {
        PyObject *item = PyIter_Next(self->source);
        if (item == NULL)
            break;
        PyTuple_SET_ITEM(chunk, i, item);
    }
    if (i < self->n) {
        Py_CLEAR(self->source);
        if (PyErr_Occurred() || i == 0) {
            Py_DECREF(chunk);
            return NULL;
        }
        PyObject *part = PyTuple_GetSlice(chunk, 0, i);
        Py_DECREF(chunk);
        return part;
    }
    return chunk;
}

static PyTypeObject Chunks_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ok_iterator.chunks",
    .tp_basicsize = sizeof(ChunksObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = chunks_new,
    .tp_traverse = (traverseproc)chunks_traverse,
    .tp_dealloc = (destructor)chunks_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)chunks_next,
};

static struct PyModuleDef chunks_module = {
    PyModuleDef_HEAD_INIT, "ok_iterator", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_ok_iterator(void)
{
    if (PyType_Ready(&Chunks_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&chunks_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "chunks", (PyObject *)&Chunks_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
