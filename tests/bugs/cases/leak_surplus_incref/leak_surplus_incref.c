/*
 * leak_surplus_incref: Memo(func) wraps a function with a cache keyed by its arguments.
 * On a miss it calls the function, stores the result in the cache and returns it: the
 * call's new reference goes to the caller, PyDict_SetItem takes its own, and the extra
 * Py_INCREF before the store is one reference too many: every cached result leaks one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *func;
    PyObject *cache;
    Py_ssize_t misses;
} MemoObject;

static PyObject *
memo_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *func;
    if (!PyArg_ParseTuple(args, "O:Memo", &func))
        return NULL;
    MemoObject *self = (MemoObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->cache = PyDict_New();
    if (self->cache == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    Py_INCREF(func);
    self->func = func;
    return (PyObject *)self;
}

static int
memo_traverse(MemoObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->func);
    Py_VISIT(self->cache);
    return 0;
}

static int
memo_clear(MemoObject *self)
{
    Py_CLEAR(self->func);
    Py_CLEAR(self->cache);
    return 0;
}

static void
memo_dealloc(MemoObject *self)
{
    PyObject_GC_UnTrack(self);
    memo_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
memo_call(MemoObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *result = PyDict_GetItemWithError(self->cache, args);
    if (result != NULL) {
        Py_INCREF(result);
        return result;
    }
    if (PyErr_Occurred())
        return NULL;
    result = PyObject_Call(self->func, args, kwds);
    if (result == NULL)
        return NULL;
    self->misses++;
#ifndef FIXED
    Py_INCREF(result);                                  /* @culprit */
#endif
    if (PyDict_SetItem(self->cache, args, result) < 0) {
        Py_DECREF(result);
        return NULL;
    }
    return result;
}

static PyObject *
memo_get_misses(MemoObject *self, void *closure)
{
    return PyLong_FromSsize_t(self->misses);
}

static PyGetSetDef memo_getset[] = {
    {"misses", (getter)memo_get_misses, NULL, "cache misses so far", NULL},
    {NULL},
};

static PyTypeObject Memo_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "leak_surplus_incref.Memo",
    .tp_basicsize = sizeof(MemoObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = memo_new,
    .tp_call = (ternaryfunc)memo_call,
    .tp_traverse = (traverseproc)memo_traverse,
    .tp_clear = (inquiry)memo_clear,
    .tp_dealloc = (destructor)memo_dealloc,
    .tp_getset = memo_getset,
};

static struct PyModuleDef memo_module = {
    PyModuleDef_HEAD_INIT, "leak_surplus_incref", "A memoizing wrapper.", -1, NULL,
};

PyMODINIT_FUNC
PyInit_leak_surplus_incref(void)
{
    if (PyType_Ready(&Memo_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&memo_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Memo_Type);
    if (PyModule_AddObject(m, "Memo", (PyObject *)&Memo_Type) < 0) {
        Py_DECREF(&Memo_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
