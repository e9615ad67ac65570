/*
 * uaf_struct_field_reentrant: LineParser(on_line).feed(data) buffers bytes and calls
 * on_line(line) for each complete line. feed() works on the buffer through a pointer
 * borrowed from its struct field; the callback may re-enter the parser (reset() here)
 * and replace the field, freeing the buffer feed() still uses.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    PyObject *on_line;
    PyObject *buffer;               /* bytes: the incomplete last line */
    Py_ssize_t lines;
} ParserObject;

static PyObject *
parser_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *on_line;
    if (!PyArg_ParseTuple(args, "O:LineParser", &on_line))
        return NULL;
    ParserObject *self = (ParserObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->on_line = Py_NewRef(on_line);
    self->buffer = PyBytes_FromStringAndSize(NULL, 0);
    if (self->buffer == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
parser_traverse(ParserObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_line);
    return 0;
}

static int
parser_clear(ParserObject *self)
{
    Py_CLEAR(self->on_line);
    Py_CLEAR(self->buffer);
    return 0;
}

static void
parser_dealloc(ParserObject *self)
{
    PyObject_GC_UnTrack(self);
    parser_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
parser_feed(ParserObject *self, PyObject *data)
{
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "feed() needs bytes");
        return NULL;
    }
    PyObject *joined = PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->buffer),
                                                 PyBytes_GET_SIZE(self->buffer));
    if (joined == NULL)
        return NULL;
    PyBytes_Concat(&joined, data);
    if (joined == NULL)
        return NULL;
    Py_SETREF(self->buffer, joined);

    PyObject *buffer = self->buffer;                                 /* @origin */
#ifdef FIXED
    Py_INCREF(buffer);
#endif
    const char *p = PyBytes_AS_STRING(buffer);
    Py_ssize_t n = PyBytes_GET_SIZE(buffer), start = 0;
    const char *nl;
    while (start < n && (nl = memchr(p + start, '\n', n - start)) != NULL) {   /* @use */
        PyObject *line = PyBytes_FromStringAndSize(p + start, nl - p - start);
        if (line == NULL)
            goto error;
        PyObject *r = PyObject_CallOneArg(self->on_line, line);   /* @frees */
        Py_DECREF(line);
        if (r == NULL)
            goto error;
        Py_DECREF(r);
        self->lines++;
        start = nl - p + 1;
    }
    PyObject *rest = PySequence_GetSlice(buffer, start, n);          /* @culprit */
    if (rest == NULL)
        goto error;
    Py_SETREF(self->buffer, rest);
#ifdef FIXED
    Py_DECREF(buffer);
#endif
    Py_RETURN_NONE;

error:
#ifdef FIXED
    Py_DECREF(buffer);
#endif
    return NULL;
}

static PyObject *
parser_reset(ParserObject *self, PyObject *unused)
{
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    if (empty == NULL)
        return NULL;
    Py_SETREF(self->buffer, empty);
    Py_RETURN_NONE;
}

static PyMethodDef parser_methods[] = {
    {"feed", (PyCFunction)parser_feed, METH_O, "feed(data): call on_line for each line"},
    {"reset", (PyCFunction)parser_reset, METH_NOARGS, "reset(): drop buffered input"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Parser_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "uaf_struct_field_reentrant.LineParser",
    .tp_basicsize = sizeof(ParserObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = parser_new,
    .tp_traverse = (traverseproc)parser_traverse,
    .tp_clear = (inquiry)parser_clear,
    .tp_dealloc = (destructor)parser_dealloc,
    .tp_methods = parser_methods,
};

static struct PyModuleDef parser_module = {
    PyModuleDef_HEAD_INIT, "uaf_struct_field_reentrant", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_uaf_struct_field_reentrant(void)
{
    if (PyType_Ready(&Parser_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&parser_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Parser_Type);
    if (PyModule_AddObject(m, "LineParser", (PyObject *)&Parser_Type) < 0) {
        Py_DECREF(&Parser_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
