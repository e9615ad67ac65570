/*
 * crash_oob_write (control, not a refcount bug): hexlify(data, sep) -> "de:ad:be:ef".
 * The output buffer is sized for the separators between bytes, but the loop also writes
 * one after the last byte: a heap buffer overflow, which the debug allocator detects when
 * the buffer is freed (Fatal Python error: bad trailing pad byte).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
hexlify(PyObject *self, PyObject *args)
{
    static const char digits[] = "0123456789abcdef";
    Py_buffer view;
    char sep = ':';
    if (!PyArg_ParseTuple(args, "y*|c:hexlify", &view, &sep))
        return NULL;
    const unsigned char *in = view.buf;
    Py_ssize_t n = view.len, size = n > 0 ? 3 * n - 1 : 0;
    char *out = PyMem_Malloc(size);             /* no NUL: the str is made from the size */
    if (out == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    char *p = out;
    for (Py_ssize_t i = 0; i < n; i++) {
        *p++ = digits[in[i] >> 4];
        *p++ = digits[in[i] & 15];
        *p++ = sep;                                                  /* @crash */
    }
    PyObject *result = PyUnicode_FromStringAndSize(out, size);
    PyMem_Free(out);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef hex_methods[] = {
    {"hexlify", hexlify, METH_VARARGS, "hexlify(data, sep=b':') -> str"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hex_module = {
    PyModuleDef_HEAD_INIT, "crash_oob_write", NULL, -1, hex_methods,
};

PyMODINIT_FUNC
PyInit_crash_oob_write(void)
{
    return PyModule_Create(&hex_module);
}
