/*
 * tp_new_borrowed_field: Handler(callback, name=None) wraps a callback. tp_new stores
 * the callback PyArg_ParseTuple gave it (a borrowed reference) in a struct field without
 * an INCREF; tp_dealloc releases it. A callback only the argument tuple held is freed
 * when the constructor returns, and the handler calls freed memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *callback;
    PyObject *name;
    Py_ssize_t calls;
} HandlerObject;

static PyObject *
handler_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"callback", "name", NULL};
    PyObject *callback, *name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|U:Handler", kwlist, &callback, &name))  /* @origin */
        return NULL;
    if (!PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "Handler() needs a callable");
        return NULL;
    }
    HandlerObject *self = (HandlerObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
#ifdef FIXED
    Py_INCREF(callback);
#endif
    self->callback = callback;                                       /* @culprit */
    self->name = name ? Py_NewRef(name) : PyUnicode_FromString("anonymous");
    if (self->name == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
handler_dealloc(HandlerObject *self)
{
    Py_XDECREF(self->callback);                                      /* @release */
    Py_XDECREF(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
handler_call(HandlerObject *self, PyObject *args, PyObject *kwds)
{
    self->calls++;
    return PyObject_Call(self->callback, args, kwds);               /* @use */
}

static PyObject *
handler_repr(HandlerObject *self)
{
    return PyUnicode_FromFormat("<Handler %U, %zd calls>", self->name, self->calls);
}

static PyTypeObject Handler_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tp_new_borrowed_field.Handler",
    .tp_basicsize = sizeof(HandlerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = handler_new,
    .tp_dealloc = (destructor)handler_dealloc,
    .tp_call = (ternaryfunc)handler_call,
    .tp_repr = (reprfunc)handler_repr,
};

static struct PyModuleDef handler_module = {
    PyModuleDef_HEAD_INIT, "tp_new_borrowed_field", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_tp_new_borrowed_field(void)
{
    if (PyType_Ready(&Handler_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&handler_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Handler_Type);
    if (PyModule_AddObject(m, "Handler", (PyObject *)&Handler_Type) < 0) {
        Py_DECREF(&Handler_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
