/*
 * module_addobject_kept: a codec module (multi-phase init, per-module state) keeps its
 * exception type in the state, to raise it, and adds it to the module with
 * PyModule_AddObject, which steals the reference. The state's pointer then holds no
 * reference, yet m_traverse visits it and m_clear releases it: the garbage collector's
 * next full pass finds more holders than references (CPython's debug build aborts in
 * gc_decref: "refcount is too small").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyObject *error;
    Py_ssize_t decoded;
} codec_state;

static PyObject *
decode(PyObject *module, PyObject *data)
{
    codec_state *st = PyModule_GetState(module);
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const unsigned char *p = view.buf;
    for (Py_ssize_t i = 0; i < view.len; i++) {
        if (p[i] >= 0x80) {
            PyErr_Format(st->error, "byte 0x%02x at %zd is not 7-bit", p[i], i);
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    PyObject *text = PyUnicode_DecodeASCII(view.buf, view.len, "strict");
    PyBuffer_Release(&view);
    if (text != NULL)
        st->decoded++;
    return text;
}

static int
codec_exec(PyObject *m)
{
    codec_state *st = PyModule_GetState(m);
    st->error = PyErr_NewException("module_addobject_kept.CodecError", NULL, NULL);
    if (st->error == NULL)
        return -1;
#ifdef FIXED
    Py_INCREF(st->error);
#endif
    if (PyModule_AddObject(m, "CodecError", st->error) < 0) {          /* @culprit */
        Py_CLEAR(st->error);
        return -1;
    }
    return 0;
}

static int
codec_traverse(PyObject *m, visitproc visit, void *arg)
{
    codec_state *st = PyModule_GetState(m);
    Py_VISIT(st->error);                                               /* @visit */
    return 0;
}

static int
codec_clear(PyObject *m)
{
    codec_state *st = PyModule_GetState(m);
    Py_CLEAR(st->error);                                               /* @release */
    return 0;
}

static void
codec_free(void *m)
{
    codec_clear((PyObject *)m);
}

static PyMethodDef codec_methods[] = {
    {"decode", decode, METH_O, "decode(data) -> str; CodecError for 8-bit bytes"},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot codec_slots[] = {
    {Py_mod_exec, codec_exec},
    {0, NULL},
};

static struct PyModuleDef codec_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "module_addobject_kept",
    .m_size = sizeof(codec_state),
    .m_methods = codec_methods,
    .m_slots = codec_slots,
    .m_traverse = codec_traverse,
    .m_clear = codec_clear,
    .m_free = codec_free,
};

PyMODINIT_FUNC
PyInit_module_addobject_kept(void)
{
    return PyModuleDef_Init(&codec_module);
}
