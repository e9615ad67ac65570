/*
 * ok_module_state (control): a module with per-module state (multi-phase init): an
 * exception type and a cache dict kept in the state and added to the module with
 * PyModule_AddObjectRef (the module takes its own reference), visited by m_traverse,
 * released by m_clear. lookup(name) caches computed entries. Correct code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject *error;
    PyObject *cache;
} lookup_state;

static PyObject *
lookup(PyObject *module, PyObject *name)
{
    lookup_state *st = PyModule_GetState(module);
    if (!PyUnicode_Check(name) || PyUnicode_GET_LENGTH(name) == 0) {
        PyErr_Format(st->error, "bad name %R", name);
        return NULL;
    }
    PyObject *hit = PyDict_GetItemWithError(st->cache, name);
    if (hit != NULL)
        return Py_NewRef(hit);
    if (PyErr_Occurred())
        return NULL;
    PyObject *entry = Py_BuildValue("(On)", name, PyUnicode_GET_LENGTH(name));
    if (entry == NULL)
        return NULL;
    if (PyDict_SetItem(st->cache, name, entry) < 0) {
        Py_DECREF(entry);
        return NULL;
    }
    return entry;
}

static int
lookup_exec(PyObject *m)
{
    lookup_state *st = PyModule_GetState(m);
    st->error = PyErr_NewException("ok_module_state.LookupError", PyExc_KeyError, NULL);
    if (st->error == NULL || PyModule_AddObjectRef(m, "LookupError", st->error) < 0)
        return -1;
    st->cache = PyDict_New();
    if (st->cache == NULL || PyModule_AddObjectRef(m, "cache", st->cache) < 0)
        return -1;
    return 0;
}

static int
lookup_traverse(PyObject *m, visitproc visit, void *arg)
{
    lookup_state *st = PyModule_GetState(m);
    Py_VISIT(st->error);
    Py_VISIT(st->cache);
    return 0;
}

static int
lookup_clear(PyObject *m)
{
    lookup_state *st = PyModule_GetState(m);
    Py_CLEAR(st->error);
    Py_CLEAR(st->cache);
    return 0;
}

static void
lookup_free(void *m)
{
    lookup_clear((PyObject *)m);
}

static PyMethodDef lookup_methods[] = {
    {"lookup", lookup, METH_O, "lookup(name) -> (name, len), cached"},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot lookup_slots[] = {
    {Py_mod_exec, lookup_exec},
    {0, NULL},
};

static struct PyModuleDef lookup_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ok_module_state",
    .m_size = sizeof(lookup_state),
    .m_methods = lookup_methods,
    .m_slots = lookup_slots,
    .m_traverse = lookup_traverse,
    .m_clear = lookup_clear,
    .m_free = lookup_free,
};

PyMODINIT_FUNC
PyInit_ok_module_state(void)
{
    return PyModuleDef_Init(&lookup_module);
}
