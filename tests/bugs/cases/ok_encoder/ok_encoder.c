/*
 * ok_encoder (control): a JSON-like encoder type in the shape of CPython's _json
 * c_make_encoder. Encoder(markers, default, key_separator, item_separator, sort_keys)
 * keeps its configuration in struct fields (INCREF'd in tp_new, released in
 * tp_clear/tp_dealloc); encode(obj) walks dicts, lists and tuples recursively, keeps
 * cycle markers in the markers dict, calls default() for other objects, and collects
 * the output chunks in a list. Correct code: nothing to blame.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *markers;              /* dict or None */
    PyObject *defaultfn;
    PyObject *key_separator;
    PyObject *item_separator;
    int sort_keys;
} EncoderObject;

static PyObject *s_null, *s_true, *s_false, *s_quote, *s_escaped_quote;

static PyObject *
encoder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"markers", "default", "key_separator", "item_separator",
                             "sort_keys", NULL};
    PyObject *markers, *defaultfn, *key_separator, *item_separator;
    int sort_keys = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOUU|p:Encoder", kwlist, &markers,
                                     &defaultfn, &key_separator, &item_separator,
                                     &sort_keys))
        return NULL;
    if (markers != Py_None && !PyDict_Check(markers)) {
        PyErr_SetString(PyExc_TypeError, "markers must be a dict or None");
        return NULL;
    }
    EncoderObject *self = (EncoderObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(markers);
    self->markers = markers;
    Py_INCREF(defaultfn);
    self->defaultfn = defaultfn;
    Py_INCREF(key_separator);
    self->key_separator = key_separator;
    Py_INCREF(item_separator);
    self->item_separator = item_separator;
    self->sort_keys = sort_keys;
    return (PyObject *)self;
}

static int
encoder_traverse(EncoderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->markers);
    Py_VISIT(self->defaultfn);
    Py_VISIT(self->key_separator);
    Py_VISIT(self->item_separator);
    return 0;
}

static int
encoder_clear(EncoderObject *self)
{
    Py_CLEAR(self->markers);
    Py_CLEAR(self->defaultfn);
    Py_CLEAR(self->key_separator);
    Py_CLEAR(self->item_separator);
    return 0;
}

static void
encoder_dealloc(EncoderObject *self)
{
    PyObject_GC_UnTrack(self);
    encoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int encode_obj(EncoderObject *self, PyObject *chunks, PyObject *obj, int depth);

/* Appends a new reference to chunks and releases it. */
static int
append_new(PyObject *chunks, PyObject *piece)
{
    if (piece == NULL)
        return -1;
    int rc = PyList_Append(chunks, piece);
    Py_DECREF(piece);
    return rc;
}

static int
encode_str(PyObject *chunks, PyObject *s)
{
    PyObject *esc = PyUnicode_Replace(s, s_quote, s_escaped_quote, -1);
    if (esc == NULL)
        return -1;
    PyObject *piece = PyUnicode_FromFormat("\"%U\"", esc);
    Py_DECREF(esc);
    return append_new(chunks, piece);
}

/* The marker for obj while it is being encoded: its id in self->markers (a new
 * reference), Py_None when there are no markers, NULL with ValueError for a cycle. */
static PyObject *
enter(EncoderObject *self, PyObject *obj)
{
    if (self->markers == Py_None)
        return Py_NewRef(Py_None);
    PyObject *ident = PyLong_FromVoidPtr(obj);
    if (ident == NULL)
        return NULL;
    int has = PyDict_Contains(self->markers, ident);
    if (has != 0) {
        if (has > 0)
            PyErr_SetString(PyExc_ValueError, "Circular reference detected");
        Py_DECREF(ident);
        return NULL;
    }
    if (PyDict_SetItem(self->markers, ident, obj) < 0) {
        Py_DECREF(ident);
        return NULL;
    }
    return ident;
}

static int
leave(EncoderObject *self, PyObject *ident)
{
    int rc = ident == Py_None ? 0 : PyDict_DelItem(self->markers, ident);
    Py_DECREF(ident);
    return rc;
}

static int
encode_list(EncoderObject *self, PyObject *chunks, PyObject *seq, int depth)
{
    PyObject *ident = enter(self, seq);
    if (ident == NULL)
        return -1;
    PyObject *fast = PySequence_Fast(seq, "not a sequence");
    if (fast == NULL)
        goto error;
    if (append_new(chunks, PyUnicode_FromString("[")) < 0)
        goto error_fast;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        if (i > 0 && PyList_Append(chunks, self->item_separator) < 0)
            goto error_fast;
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        Py_INCREF(item);
        int rc = encode_obj(self, chunks, item, depth + 1);
        Py_DECREF(item);
        if (rc < 0)
            goto error_fast;
    }
    Py_DECREF(fast);
    if (append_new(chunks, PyUnicode_FromString("]")) < 0)
        goto error;
    return leave(self, ident);

error_fast:
    Py_DECREF(fast);
error:
    Py_DECREF(ident);
    return -1;
}

static int
encode_dict(EncoderObject *self, PyObject *chunks, PyObject *dct, int depth)
{
    PyObject *ident = enter(self, dct);
    if (ident == NULL)
        return -1;
    PyObject *items = PyMapping_Items(dct);
    if (items == NULL)
        goto error;
    if (self->sort_keys && PyList_Sort(items) < 0)
        goto error_items;
    if (append_new(chunks, PyUnicode_FromString("{")) < 0)
        goto error_items;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *key = PyTuple_GET_ITEM(pair, 0), *value = PyTuple_GET_ITEM(pair, 1);
        if (!PyUnicode_Check(key)) {
            PyErr_Format(PyExc_TypeError, "keys must be str, not %.100s",
                         Py_TYPE(key)->tp_name);
            goto error_items;
        }
        if (i > 0 && PyList_Append(chunks, self->item_separator) < 0)
            goto error_items;
        if (encode_str(chunks, key) < 0 || PyList_Append(chunks, self->key_separator) < 0)
            goto error_items;
        if (encode_obj(self, chunks, value, depth + 1) < 0)
            goto error_items;
    }
    Py_DECREF(items);
    if (append_new(chunks, PyUnicode_FromString("}")) < 0)
        goto error;
    return leave(self, ident);

error_items:
    Py_DECREF(items);
error:
    Py_DECREF(ident);
    return -1;
}

static int
encode_obj(EncoderObject *self, PyObject *chunks, PyObject *obj, int depth)
{
    if (obj == Py_None)
        return PyList_Append(chunks, s_null);
    if (obj == Py_True)
        return PyList_Append(chunks, s_true);
    if (obj == Py_False)
        return PyList_Append(chunks, s_false);
    if (PyUnicode_Check(obj))
        return encode_str(chunks, obj);
    if (PyLong_Check(obj))
        return append_new(chunks, PyObject_Str(obj));
    if (PyFloat_Check(obj))
        return append_new(chunks, PyObject_Repr(obj));
    if (Py_EnterRecursiveCall(" while encoding an object"))
        return -1;
    int rc;
    if (PyList_Check(obj) || PyTuple_Check(obj)) {
        rc = encode_list(self, chunks, obj, depth);
    }
    else if (PyDict_Check(obj)) {
        rc = encode_dict(self, chunks, obj, depth);
    }
    else {
        PyObject *ident = enter(self, obj);
        if (ident == NULL) {
            Py_LeaveRecursiveCall();
            return -1;
        }
        PyObject *repl = PyObject_CallOneArg(self->defaultfn, obj);
        rc = repl == NULL ? -1 : encode_obj(self, chunks, repl, depth + 1);
        Py_XDECREF(repl);
        if (rc == 0)
            rc = leave(self, ident);
        else
            Py_DECREF(ident);
    }
    Py_LeaveRecursiveCall();
    return rc;
}

static PyObject *
encoder_encode(EncoderObject *self, PyObject *obj)
{
    PyObject *chunks = PyList_New(0);
    if (chunks == NULL)
        return NULL;
    if (encode_obj(self, chunks, obj, 0) < 0) {
        Py_DECREF(chunks);
        return NULL;
    }
    PyObject *empty = PyUnicode_New(0, 0);
    PyObject *result = empty ? PyUnicode_Join(empty, chunks) : NULL;
    Py_XDECREF(empty);
    Py_DECREF(chunks);
    return result;
}

static PyMethodDef encoder_methods[] = {
    {"encode", (PyCFunction)encoder_encode, METH_O, "encode(obj) -> str"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Encoder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ok_encoder.Encoder",
    .tp_basicsize = sizeof(EncoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = encoder_new,
    .tp_traverse = (traverseproc)encoder_traverse,
    .tp_clear = (inquiry)encoder_clear,
    .tp_dealloc = (destructor)encoder_dealloc,
    .tp_methods = encoder_methods,
};

static struct PyModuleDef encoder_module = {
    PyModuleDef_HEAD_INIT, "ok_encoder", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_ok_encoder(void)
{
    s_null = PyUnicode_InternFromString("null");
    s_true = PyUnicode_InternFromString("true");
    s_false = PyUnicode_InternFromString("false");
    s_quote = PyUnicode_InternFromString("\"");
    s_escaped_quote = PyUnicode_InternFromString("\\\"");
    if (!s_null || !s_true || !s_false || !s_quote || !s_escaped_quote)
        return NULL;
    if (PyType_Ready(&Encoder_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&encoder_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Encoder", (PyObject *)&Encoder_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
