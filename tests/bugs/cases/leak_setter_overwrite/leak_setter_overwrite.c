/*
 * leak_setter_overwrite: Config objects keep a name, set in tp_init and by a property
 * setter. The setter stores the new value over the old one without releasing it: each
 * assignment leaks the previous name.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *name;
    int verbose;
} ConfigObject;

static int
config_init(ConfigObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "verbose", NULL};
    PyObject *name;
    int verbose = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "U|p:Config", kwlist, &name, &verbose))
        return -1;
    Py_INCREF(name);                                     /* @init-acquire */
    Py_XSETREF(self->name, name);
    self->verbose = verbose;
    return 0;
}

static void
config_dealloc(ConfigObject *self)
{
    Py_XDECREF(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
config_get_name(ConfigObject *self, void *closure)
{
    return Py_NewRef(self->name);
}

static int
config_set_name(ConfigObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete name");
        return -1;
    }
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "name must be str, not %.100s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
#ifdef FIXED
    Py_XDECREF(self->name);
#endif
    Py_INCREF(value);                                    /* @acquire */
    self->name = value;                                  /* @lost */
    return 0;
}

static PyGetSetDef config_getset[] = {
    {"name", (getter)config_get_name, (setter)config_set_name, "the name", NULL},
    {NULL},
};

static PyTypeObject Config_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "leak_setter_overwrite.Config",
    .tp_basicsize = sizeof(ConfigObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)config_init,
    .tp_dealloc = (destructor)config_dealloc,
    .tp_getset = config_getset,
};

static struct PyModuleDef config_module = {
    PyModuleDef_HEAD_INIT, "leak_setter_overwrite", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_leak_setter_overwrite(void)
{
    if (PyType_Ready(&Config_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&config_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Config_Type);
    if (PyModule_AddObject(m, "Config", (PyObject *)&Config_Type) < 0) {
        Py_DECREF(&Config_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
