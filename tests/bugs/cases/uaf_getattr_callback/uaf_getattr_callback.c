/*
 * uaf_getattr_callback: render(items, options) -> one formatted line per item, with
 * options.prefix read for each item. The item is borrowed from the list; reading the
 * attribute runs options' __getattr__, which may reload the list and free the item
 * before it is formatted.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *
render(PyObject *self, PyObject *args)
{
    PyObject *items, *options, *lines;

    if (!PyArg_ParseTuple(args, "O!O:render", &PyList_Type, &items, &options))
        return NULL;
    lines = PyList_New(0);
    if (lines == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i);                  /* @origin */
#ifdef FIXED
        Py_INCREF(item);
#endif
        PyObject *prefix = PyObject_GetAttrString(options, "prefix");   /* @frees */
        if (prefix == NULL)
            goto error;
        PyObject *text = PyObject_Str(item);                          /* @culprit */
        PyObject *line = text ? PyUnicode_Concat(prefix, text) : NULL;
        Py_DECREF(prefix);
        Py_XDECREF(text);
#ifdef FIXED
        Py_DECREF(item);
#endif
        if (line == NULL || PyList_Append(lines, line) < 0) {
            Py_XDECREF(line);
            goto error;
        }
        Py_DECREF(line);
    }
    return lines;

error:
    Py_DECREF(lines);
    return NULL;
}

static PyMethodDef render_methods[] = {
    {"render", render, METH_VARARGS, "render(items, options) -> list of lines"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef render_module = {
    PyModuleDef_HEAD_INIT, "uaf_getattr_callback", NULL, -1, render_methods,
};

PyMODINIT_FUNC
PyInit_uaf_getattr_callback(void)
{
    return PyModule_Create(&render_module);
}
