/*
 * double_xdecref_error: load_point(obj) -> (x, y) from obj.x and obj.y as floats. After
 * converting x it releases the attribute with Py_XDECREF but leaves the pointer set; when
 * the conversion failed, the error path releases it again. The object obj.__dict__ still
 * holds is freed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef FIXED
#define RELEASE(o) Py_CLEAR(o)
#else
#define RELEASE(o) Py_XDECREF(o)
#endif

static PyObject *
load_point(PyObject *self, PyObject *obj)
{
    PyObject *attr = NULL;
    double x, y;

    attr = PyObject_GetAttrString(obj, "x");                 /* @origin */
    if (attr == NULL)
        goto error;
    x = PyFloat_AsDouble(attr);
    RELEASE(attr);                                            /* @first */
    if (x == -1.0 && PyErr_Occurred())
        goto error;
    attr = PyObject_GetAttrString(obj, "y");
    if (attr == NULL)
        goto error;
    y = PyFloat_AsDouble(attr);
    RELEASE(attr);
    if (y == -1.0 && PyErr_Occurred())
        goto error;
    return Py_BuildValue("(dd)", x, y);

error:
    Py_XDECREF(attr);                                         /* @culprit */
    return NULL;
}

static PyMethodDef geometry_methods[] = {
    {"load_point", load_point, METH_O, "load_point(obj) -> (obj.x, obj.y) as floats"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef geometry_module = {
    PyModuleDef_HEAD_INIT, "double_xdecref_error", NULL, -1, geometry_methods,
};

PyMODINIT_FUNC
PyInit_double_xdecref_error(void)
{
    return PyModule_Create(&geometry_module);
}
