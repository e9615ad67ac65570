/*
 * double_clear_dealloc: Node(value, parent=None) objects form trees; the type supports
 * the garbage collector. tp_clear releases the fields with Py_XDECREF but leaves the
 * pointers set, and tp_dealloc, which calls tp_clear, releases the value again.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *value;
    PyObject *parent;
} NodeObject;

static PyObject *
node_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"value", "parent", NULL};
    PyObject *value, *parent = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:Node", kwlist, &value, &parent))
        return NULL;
    NodeObject *self = (NodeObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(value);
    self->value = value;
    Py_INCREF(parent);
    self->parent = parent;
    return (PyObject *)self;
}

static int
node_traverse(NodeObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->value);
    Py_VISIT(self->parent);
    return 0;
}

static int
node_clear(NodeObject *self)
{
#ifdef FIXED
    Py_CLEAR(self->value);
    Py_CLEAR(self->parent);
#else
    Py_XDECREF(self->value);                                         /* @first */
    Py_XDECREF(self->parent);
#endif
    return 0;
}

static void
node_dealloc(NodeObject *self)
{
    PyObject_GC_UnTrack(self);
    node_clear(self);
    Py_XDECREF(self->value);                                         /* @culprit */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef node_members[] = {
    {"value", T_OBJECT, offsetof(NodeObject, value), READONLY, "the node's value"},
    {"parent", T_OBJECT, offsetof(NodeObject, parent), READONLY, "the parent node"},
    {NULL},
};

static PyTypeObject Node_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "double_clear_dealloc.Node",
    .tp_basicsize = sizeof(NodeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = node_new,
    .tp_traverse = (traverseproc)node_traverse,
    .tp_clear = (inquiry)node_clear,
    .tp_dealloc = (destructor)node_dealloc,
    .tp_members = node_members,
};

static struct PyModuleDef node_module = {
    PyModuleDef_HEAD_INIT, "double_clear_dealloc", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_double_clear_dealloc(void)
{
    if (PyType_Ready(&Node_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&node_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Node_Type);
    if (PyModule_AddObject(m, "Node", (PyObject *)&Node_Type) < 0) {
        Py_DECREF(&Node_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
