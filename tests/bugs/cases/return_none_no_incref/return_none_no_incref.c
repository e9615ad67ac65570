/*
 * return_none_no_incref: Logger.log(msg) appends msg to the logger's lines and returns
 * None with `return Py_None`: a borrowed reference returned as a new one. Every call
 * takes one reference from None; on 3.11 and earlier None's count reaches zero
 * ("deallocating None").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject_HEAD
    PyObject *lines;
} LoggerObject;

static PyObject *
logger_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    LoggerObject *self = (LoggerObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->lines = PyList_New(0);
    if (self->lines == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
logger_dealloc(LoggerObject *self)
{
    Py_XDECREF(self->lines);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
logger_log(LoggerObject *self, PyObject *msg)
{
    if (!PyUnicode_Check(msg)) {
        PyErr_SetString(PyExc_TypeError, "log() needs a str");
        return NULL;
    }
    if (PyList_GET_SIZE(self->lines) >= 100 && PySequence_DelItem(self->lines, 0) < 0)
        return NULL;
    if (PyList_Append(self->lines, msg) < 0)
        return NULL;
#ifdef FIXED
    Py_RETURN_NONE;
#else
    return Py_None;                                                    /* @culprit */
#endif
}

static PyObject *
logger_count(LoggerObject *self, PyObject *unused)
{
    return PyLong_FromSsize_t(PyList_GET_SIZE(self->lines));
}

static PyMethodDef logger_methods[] = {
    {"log", (PyCFunction)logger_log, METH_O, "log(msg): keep msg (the last 100)"},
    {"count", (PyCFunction)logger_count, METH_NOARGS, "count() -> lines kept"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject Logger_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "return_none_no_incref.Logger",
    .tp_basicsize = sizeof(LoggerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = logger_new,
    .tp_dealloc = (destructor)logger_dealloc,
    .tp_methods = logger_methods,
};

static struct PyModuleDef logger_module = {
    PyModuleDef_HEAD_INIT, "return_none_no_incref", NULL, -1, NULL,
};

PyMODINIT_FUNC
PyInit_return_none_no_incref(void)
{
    if (PyType_Ready(&Logger_Type) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&logger_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&Logger_Type);
    if (PyModule_AddObject(m, "Logger", (PyObject *)&Logger_Type) < 0) {
        Py_DECREF(&Logger_Type);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
