/*
 * getter_borrowed_return: Gauge(label, value) keeps its label in a struct field; the
 * `label` property returns the field without an INCREF. The caller releases what it got,
 * so each read takes a reference the gauge owns: the label is freed while the gauge
 * still points at it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *label;
    double value;
} GaugeObject;

static PyObject *
gauge_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"label", "value", NULL};
    PyObject *label;
    double value = 0.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|d:Gauge", kwlist, &label, &value))
        return NULL;
    GaugeObject *self = (GaugeObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    Py_INCREF(label);                                                /* @origin */
    self->label = label;
    self->value = value;
    return (PyObject *)self;
}

static void
gauge_dealloc(GaugeObject *self)
{
    Py_XDECREF(self->label);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
gauge_get_label(GaugeObject *self, void *closure)
{
#ifdef FIXED
    Py_INCREF(self->label);
#endif
    return self->label;                                              /* @culprit */
}

static PyObject *
gauge_get_value(GaugeObject *self, void *closure)
{
    return PyFloat_FromDouble(self->value);
}

static PyObject *
gauge_repr(GaugeObject *self)
{
    PyObject *value = PyFloat_FromDouble(self->value);
    if (value == NULL)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("Gauge(%R, %R)", self->label, value);    /* @use */
    Py_DECREF(value);
    return r;
}

static PyGetSetDef gauge_getset[] = {
    {"label", (getter)gauge_get_label, NULL, "the gauge's label", NULL},
    {"value", (getter)gauge_get_value, NULL, "the current value", NULL},
    {NULL},
};

static PyTypeObject Gauge_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "getter_borrowed_return.Gauge",
    .tp_basicsize = sizeof(GaugeObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = gauge_new,
    .tp_dealloc = (destructor)gauge_dealloc,
    .tp_repr = (reprfunc)gauge_repr,
    .tp_getset = gauge_getset,
};

static struct PyModuleDef gauge_module = {
    PyModuleDef_HEAD_INIT, "getter_borrowed_return", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_getter_borrowed_return(void)
{
    if (PyType_Ready(&Gauge_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&gauge_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Gauge_Type);
    if (PyModule_AddObject(m, "Gauge", (PyObject *)&Gauge_Type) < 0) {
        Py_DECREF(&Gauge_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
