/*
 * crash_null_field (control, not a refcount bug): Queue objects hold an interned name
 * and a list of items; close() clears the items (tp_clear's Py_CLEAR). pending() reads
 * the list's size without checking for a closed queue: a NULL dereference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *name;                 /* interned str */
    PyObject *items;                /* list; NULL once closed */
} QueueObject;

static PyObject *
queue_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s:Queue", &name))
        return NULL;
    QueueObject *self = (QueueObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->name = PyUnicode_InternFromString(name);
    self->items = PyList_New(0);
    if (self->name == NULL || self->items == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
queue_traverse(QueueObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->items);
    return 0;
}

static int
queue_clear(QueueObject *self)
{
    Py_CLEAR(self->items);
    return 0;
}

static void
queue_dealloc(QueueObject *self)
{
    PyObject_GC_UnTrack(self);
    queue_clear(self);
    Py_CLEAR(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
queue_put(QueueObject *self, PyObject *item)
{
    if (self->items == NULL) {
        PyErr_Format(PyExc_ValueError, "queue %U is closed", self->name);
        return NULL;
    }
    if (PyList_Append(self->items, item) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
queue_close(QueueObject *self, PyObject *unused)
{
    queue_clear(self);
    Py_RETURN_NONE;
}

static PyObject *
queue_pending(QueueObject *self, PyObject *unused)
{
    return PyLong_FromSsize_t(PyList_GET_SIZE(self->items));          /* @crash */
}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)queue_put, METH_O, "put(item)"},
    {"close", (PyCFunction)queue_close, METH_NOARGS, "close(): drop the items"},
    {"pending", (PyCFunction)queue_pending, METH_NOARGS, "pending() -> items queued"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Queue_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "crash_null_field.Queue",
    .tp_basicsize = sizeof(QueueObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = queue_new,
    .tp_traverse = (traverseproc)queue_traverse,
    .tp_clear = (inquiry)queue_clear,
    .tp_dealloc = (destructor)queue_dealloc,
    .tp_methods = queue_methods,
};

static struct PyModuleDef queue_module = {
    PyModuleDef_HEAD_INIT, "crash_null_field", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_crash_null_field(void)
{
    if (PyType_Ready(&Queue_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&queue_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Queue", (PyObject *)&Queue_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
