/*
 * crash_assert (control, not a refcount bug): Scope objects track a nesting depth with
 * __enter__/__exit__; a C assert() checks the depth never goes negative, and an extra
 * __exit__ fails it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <assert.h>

typedef struct {
    PyObject_HEAD
    int depth;
    PyObject *names;                /* list: the names entered */
} ScopeObject;

static PyObject *
scope_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    ScopeObject *self = (ScopeObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->names = PyList_New(0);
    if (self->names == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
scope_dealloc(ScopeObject *self)
{
    Py_XDECREF(self->names);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
scope_enter(ScopeObject *self, PyObject *unused)
{
    PyObject *name = PyUnicode_FromFormat("level-%d", self->depth);
    if (name == NULL)
        return NULL;
    int rc = PyList_Append(self->names, name);
    Py_DECREF(name);
    if (rc < 0)
        return NULL;
    self->depth++;
    return Py_NewRef(self);
}

static PyObject *
scope_exit(ScopeObject *self, PyObject *args)
{
    self->depth--;
    assert(self->depth >= 0);                                        /* @crash */
    Py_ssize_t n = PyList_GET_SIZE(self->names);
    if (n > 0 && PyList_SetSlice(self->names, n - 1, n, NULL) < 0)
        return NULL;
    Py_RETURN_FALSE;
}

static PyMethodDef scope_methods[] = {
    {"__enter__", (PyCFunction)scope_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)scope_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Scope_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "crash_assert.Scope",
    .tp_basicsize = sizeof(ScopeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = scope_new,
    .tp_dealloc = (destructor)scope_dealloc,
    .tp_methods = scope_methods,
};

static struct PyModuleDef scope_module = {
    PyModuleDef_HEAD_INIT, "crash_assert", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_crash_assert(void)
{
    if (PyType_Ready(&Scope_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&scope_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Scope", (PyObject *)&Scope_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
