/*
 * ok_type_fields (control): Connection objects hold references in struct fields: set
 * with Py_INCREF in tp_new and tp_init (tp_init may run again: Py_XSETREF), released in
 * tp_clear (Py_CLEAR) and tp_dealloc, visited in tp_traverse. close() calls the on_close
 * callback and clears the fields. Correct code: nothing to blame.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *host;                 /* str */
    PyObject *options;              /* dict */
    PyObject *on_close;             /* callable or None */
    PyObject *sent;                 /* list of bytes, NULL once closed */
} ConnectionObject;

static PyObject *
conn_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    ConnectionObject *self = (ConnectionObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->sent = PyList_New(0);
    if (self->sent == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->on_close = Py_NewRef(Py_None);
    return (PyObject *)self;
}

static int
conn_init(ConnectionObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"host", "options", "on_close", NULL};
    PyObject *host, *options = NULL, *on_close = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|O!O:Connection", kwlist, &host,
                                     &PyDict_Type, &options, &on_close))
        return -1;
    PyObject *opts = options ? PyDict_Copy(options) : PyDict_New();
    if (opts == NULL)
        return -1;
    Py_XSETREF(self->options, opts);
    Py_INCREF(host);
    Py_XSETREF(self->host, host);
    Py_INCREF(on_close);
    Py_XSETREF(self->on_close, on_close);
    return 0;
}

static int
conn_traverse(ConnectionObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->options);
    Py_VISIT(self->on_close);
    Py_VISIT(self->sent);
    return 0;
}

static int
conn_clear(ConnectionObject *self)
{
    Py_CLEAR(self->host);
    Py_CLEAR(self->options);
    Py_CLEAR(self->on_close);
    Py_CLEAR(self->sent);
    return 0;
}

static void
conn_dealloc(ConnectionObject *self)
{
    PyObject_GC_UnTrack(self);
    conn_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
conn_send(ConnectionObject *self, PyObject *data)
{
    if (self->sent == NULL) {
        PyErr_SetString(PyExc_ValueError, "send() on a closed connection");
        return NULL;
    }
    PyObject *chunk = PyBytes_FromObject(data);
    if (chunk == NULL)
        return NULL;
    int rc = PyList_Append(self->sent, chunk);
    Py_DECREF(chunk);
    if (rc < 0)
        return NULL;
    return PyLong_FromSsize_t(PyList_GET_SIZE(self->sent));
}

static PyObject *
conn_close(ConnectionObject *self, PyObject *unused)
{
    if (self->sent == NULL)
        Py_RETURN_NONE;
    PyObject *cb = self->on_close;
    self->on_close = NULL;
    PyObject *sent = self->sent;
    self->sent = NULL;
    PyObject *r = cb != Py_None ? PyObject_CallOneArg(cb, sent) : Py_NewRef(Py_None);
    Py_DECREF(cb);
    Py_DECREF(sent);
    self->on_close = Py_NewRef(Py_None);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *
conn_get_host(ConnectionObject *self, void *closure)
{
    return Py_NewRef(self->host ? self->host : Py_None);
}

static PyObject *
conn_get_option(ConnectionObject *self, PyObject *name)
{
    PyObject *v = self->options ? PyDict_GetItemWithError(self->options, name) : NULL;
    if (v == NULL && PyErr_Occurred())
        return NULL;
    return Py_NewRef(v ? v : Py_None);
}

static PyMethodDef conn_methods[] = {
    {"send", (PyCFunction)conn_send, METH_O, "send(data) -> chunks sent"},
    {"close", (PyCFunction)conn_close, METH_NOARGS, "close(): call on_close(sent)"},
    {"option", (PyCFunction)conn_get_option, METH_O, "option(name) -> value or None"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef conn_getset[] = {
    {"host", (getter)conn_get_host, NULL, "the host", NULL},
    {NULL},
};

static PyTypeObject Connection_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ok_type_fields.Connection",
    .tp_basicsize = sizeof(ConnectionObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = conn_new,
    .tp_init = (initproc)conn_init,
    .tp_traverse = (traverseproc)conn_traverse,
    .tp_clear = (inquiry)conn_clear,
    .tp_dealloc = (destructor)conn_dealloc,
    .tp_methods = conn_methods,
    .tp_getset = conn_getset,
};

static struct PyModuleDef conn_module = {
    PyModuleDef_HEAD_INIT, "ok_type_fields", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_ok_type_fields(void)
{
    if (PyType_Ready(&Connection_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&conn_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Connection", (PyObject *)&Connection_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
