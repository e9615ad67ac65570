/*
 * iternext_borrowed_return: Table(rows) iterates over its rows with an iterator type of
 * its own. tp_iternext returns the list item it borrowed (PyList_GET_ITEM) without an
 * INCREF: each row the loop receives and releases loses one of the list's references.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *rows;                 /* a list */
} TableObject;

typedef struct {
    PyObject_HEAD
    TableObject *table;
    Py_ssize_t index;
} RowIterObject;

static PyTypeObject RowIter_Type;

static PyObject *
table_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *rows = NULL;
    if (!PyArg_ParseTuple(args, "|O:Table", &rows))
        return NULL;
    TableObject *self = (TableObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->rows = rows ? PySequence_List(rows) : PyList_New(0);
    if (self->rows == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
table_traverse(TableObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->rows);
    return 0;
}

static int
table_clear(TableObject *self)
{
    Py_CLEAR(self->rows);
    return 0;
}

static void
table_dealloc(TableObject *self)
{
    PyObject_GC_UnTrack(self);
    table_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
table_iter(TableObject *self)
{
    RowIterObject *it = PyObject_GC_New(RowIterObject, &RowIter_Type);
    if (it == NULL)
        return NULL;
    Py_INCREF(self);
    it->table = self;
    it->index = 0;
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PyObject *
table_get_rows(TableObject *self, void *closure)
{
    return PyList_GetSlice(self->rows, 0, PyList_GET_SIZE(self->rows));
}

static PyGetSetDef table_getset[] = {
    {"rows", (getter)table_get_rows, NULL, "a copy of the rows", NULL},
    {NULL},
};

static int
rowiter_traverse(RowIterObject *it, visitproc visit, void *arg)
{
    Py_VISIT(it->table);
    return 0;
}

static void
rowiter_dealloc(RowIterObject *it)
{
    PyObject_GC_UnTrack(it);
    Py_XDECREF(it->table);
    PyObject_GC_Del(it);
}

static PyObject *
rowiter_next(RowIterObject *it)
{
    PyObject *rows = it->table->rows;
    if (rows == NULL || it->index >= PyList_GET_SIZE(rows))
        return NULL;
    PyObject *row = PyList_GET_ITEM(rows, it->index);                /* @origin */
    it->index++;
#ifdef FIXED
    Py_INCREF(row);
#endif
    return row;                                                      /* @culprit */
}

static PyTypeObject RowIter_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "iternext_borrowed_return.RowIterator",
    .tp_basicsize = sizeof(RowIterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)rowiter_traverse,
    .tp_dealloc = (destructor)rowiter_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)rowiter_next,
};

static PyTypeObject Table_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "iternext_borrowed_return.Table",
    .tp_basicsize = sizeof(TableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = table_new,
    .tp_traverse = (traverseproc)table_traverse,
    .tp_clear = (inquiry)table_clear,
    .tp_dealloc = (destructor)table_dealloc,
    .tp_iter = (getiterfunc)table_iter,
    .tp_getset = table_getset,
};

static struct PyModuleDef table_module = {
    PyModuleDef_HEAD_INIT, "iternext_borrowed_return", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_iternext_borrowed_return(void)
{
    if (PyType_Ready(&Table_Type) < 0 || PyType_Ready(&RowIter_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&table_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Table_Type);
    if (PyModule_AddObject(m, "Table", (PyObject *)&Table_Type) < 0) {
        Py_DECREF(&Table_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
