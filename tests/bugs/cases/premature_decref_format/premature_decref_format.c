/*
 * premature_decref_format: Registry.register(obj) files obj under the key
 * "<type>:<id>", built with PyUnicode_FromFormat. The key is released right after the
 * duplicate check, before its last use in PyDict_SetItem: the store reads a freed key.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *entries;              /* dict: key -> object */
} RegistryObject;

static PyObject *
registry_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    RegistryObject *self = (RegistryObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->entries = PyDict_New();
    if (self->entries == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
registry_dealloc(RegistryObject *self)
{
    Py_XDECREF(self->entries);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
registry_register(RegistryObject *self, PyObject *obj)
{
    Py_ssize_t n = PyDict_GET_SIZE(self->entries);
    PyObject *key = PyUnicode_FromFormat("%s:%zd", Py_TYPE(obj)->tp_name, n);  /* @origin */
    if (key == NULL)
        return NULL;
    int rc = -1, present = PyDict_Contains(self->entries, key);
#ifndef FIXED
    Py_DECREF(key);                                                  /* @culprit */
#endif
    if (present == 0)
        rc = PyDict_SetItem(self->entries, key, obj);                 /* @use */
    else if (present > 0)
        PyErr_SetString(PyExc_KeyError, "already registered");
#ifdef FIXED
    Py_DECREF(key);
#endif
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
registry_keys(RegistryObject *self, PyObject *unused)
{
    return PyDict_Keys(self->entries);
}

static PyMethodDef registry_methods[] = {
    {"register", (PyCFunction)registry_register, METH_O, "register(obj): file obj under \"<type>:<n>\""},
    {"keys", (PyCFunction)registry_keys, METH_NOARGS, "keys() -> list"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Registry_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "premature_decref_format.Registry",
    .tp_basicsize = sizeof(RegistryObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = registry_new,
    .tp_dealloc = (destructor)registry_dealloc,
    .tp_methods = registry_methods,
};

static struct PyModuleDef registry_module = {
    PyModuleDef_HEAD_INIT, "premature_decref_format", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_premature_decref_format(void)
{
    if (PyType_Ready(&Registry_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&registry_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Registry_Type);
    if (PyModule_AddObject(m, "Registry", (PyObject *)&Registry_Type) < 0) {
        Py_DECREF(&Registry_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
