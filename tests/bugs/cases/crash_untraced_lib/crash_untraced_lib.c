/*
 * crash_untraced_lib (control, not a refcount bug): record(buffer, index) copies the
 * index-th 64-byte record out of a buffer with memcpy, without checking the index: a
 * large one makes libc's memcpy (untraced code) read unmapped memory.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define RECORD 64

static PyObject *
record(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t index;
    char out[RECORD];
    if (!PyArg_ParseTuple(args, "y*n:record", &view, &index))
        return NULL;
    memcpy(out, (const char *)view.buf + index * RECORD, RECORD);     /* @crash */
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize(out, RECORD);
}

static PyMethodDef rec_methods[] = {
    {"record", record, METH_VARARGS, "record(buffer, index) -> 64 bytes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef rec_module = {
    PyModuleDef_HEAD_INIT, "crash_untraced_lib", NULL, -1, rec_methods,
};

PyMODINIT_FUNC
PyInit_crash_untraced_lib(void)
{
    return PyModule_Create(&rec_module);
}
