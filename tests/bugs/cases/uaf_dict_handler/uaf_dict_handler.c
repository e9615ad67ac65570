/*
 * uaf_dict_handler: Dispatcher.emit(event) calls every handler registered for event. The
 * handler list is borrowed from the dict of handlers; a handler that unregisters the
 * event frees the list while the loop still walks it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *handlers;             /* dict: event -> list of callables */
} DispatcherObject;

static PyObject *
dispatcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    DispatcherObject *self = (DispatcherObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->handlers = PyDict_New();
    if (self->handlers == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
dispatcher_traverse(DispatcherObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->handlers);
    return 0;
}

static int
dispatcher_clear(DispatcherObject *self)
{
    Py_CLEAR(self->handlers);
    return 0;
}

static void
dispatcher_dealloc(DispatcherObject *self)
{
    PyObject_GC_UnTrack(self);
    dispatcher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
dispatcher_on(DispatcherObject *self, PyObject *args)
{
    PyObject *event, *handler;
    if (!PyArg_ParseTuple(args, "UO:on", &event, &handler))
        return NULL;
    PyObject *list = PyDict_GetItemWithError(self->handlers, event);
    if (list == NULL) {
        if (PyErr_Occurred())
            return NULL;
        list = PyList_New(0);
        if (list == NULL)
            return NULL;
        int rc = PyDict_SetItem(self->handlers, event, list);
        Py_DECREF(list);
        if (rc < 0)
            return NULL;
    }
    if (PyList_Append(list, handler) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
dispatcher_off(DispatcherObject *self, PyObject *event)
{
    if (PyDict_DelItem(self->handlers, event) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
dispatcher_emit(DispatcherObject *self, PyObject *args)
{
    PyObject *event, *payload = Py_None;
    Py_ssize_t called = 0;
    if (!PyArg_ParseTuple(args, "U|O:emit", &event, &payload))
        return NULL;
    PyObject *list = PyDict_GetItemWithError(self->handlers, event);   /* @origin */
    if (list == NULL)
        return PyErr_Occurred() ? NULL : PyLong_FromLong(0);
#ifdef FIXED
    Py_INCREF(list);
#endif
    for (Py_ssize_t i = 0; i < PyList_Size(list); i++) {              /* @culprit */
        PyObject *r = PyObject_CallOneArg(PyList_GET_ITEM(list, i), payload);   /* @use */
        if (r == NULL) {
#ifdef FIXED
            Py_DECREF(list);
#endif
            return NULL;
        }
        Py_DECREF(r);
        called++;
    }
#ifdef FIXED
    Py_DECREF(list);
#endif
    return PyLong_FromSsize_t(called);
}

static PyMethodDef dispatcher_methods[] = {
    {"on", (PyCFunction)dispatcher_on, METH_VARARGS, "on(event, handler)"},
    {"off", (PyCFunction)dispatcher_off, METH_O, "off(event): drop the event's handlers"},
    {"emit", (PyCFunction)dispatcher_emit, METH_VARARGS, "emit(event, payload=None) -> calls"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Dispatcher_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uaf_dict_handler.Dispatcher",
    .tp_basicsize = sizeof(DispatcherObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = dispatcher_new,
    .tp_traverse = (traverseproc)dispatcher_traverse,
    .tp_clear = (inquiry)dispatcher_clear,
    .tp_dealloc = (destructor)dispatcher_dealloc,
    .tp_methods = dispatcher_methods,
};

static struct PyModuleDef dispatcher_module = {
    PyModuleDef_HEAD_INIT, "uaf_dict_handler", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_uaf_dict_handler(void)
{
    if (PyType_Ready(&Dispatcher_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&dispatcher_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Dispatcher_Type);
    if (PyModule_AddObject(m, "Dispatcher", (PyObject *)&Dispatcher_Type) < 0) {
        Py_DECREF(&Dispatcher_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
