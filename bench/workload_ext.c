/*
 * workload_ext.c — `make bench-compare`'s workload: a reference-count-heavy extension that
 * builds and walks lists, tuples and dicts from C and calls back into Python, the way a
 * parser, a serialiser or a data-structure library does.
 *
 * bench/compare.py compiles this one source several ways — against the interpreter's own
 * Python.h (untraced), through pyref's shim (traced), with -fsanitize=address — and runs
 * bench/workload.py over each; only what Py_INCREF/Py_DECREF and the allocator become
 * differs. MODNAME names the module (workload_untraced, workload_traced, ...).
 *
 * One pass of run(n, callback, every) on n items makes 31 of the extension's own
 * Py_INCREF/Py_DECREF per item (all recorded when traced; the shim's C-API origin records
 * add about 54 more, see bench/RESULTS.md), n/every calls of `callback`, and allocates
 * and frees 5 objects per item (an int, a float, three tuples) plus a dict entry.
 * CPython's own reference counting inside the API calls is not the extension's and is
 * never recorded. Nothing here is timed: workload.py times the call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef MODNAME
#error "build with -DMODNAME=workload_untraced (or _traced, _asan, ...)"
#endif
#define WL_CAT2(a, b) a##b
#define WL_CAT(a, b) WL_CAT2(a, b)
#define WL_STR2(a) #a
#define WL_STR(a) WL_STR2(a)

/* The value an item contributes to the checksum: ints and floats by value, anything else
 * by 1. Borrowed `x`; cannot fail. */
static long long value_of(PyObject *x)
{
    if (PyLong_CheckExact(x))
        return PyLong_AsLongLong(x);
    if (PyFloat_CheckExact(x))
        return (long long)PyFloat_AS_DOUBLE(x);
    return 1;
}

/* build(n, tag) -> new list of n 4-tuples (i, i / 2.0, tag, (i, tag)). NULL on error. */
static PyObject *build(Py_ssize_t n, PyObject *tag)
{
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = PyLong_FromSsize_t(i);
        PyObject *b = PyFloat_FromDouble((double)i / 2.0);
        PyObject *inner = PyTuple_New(2);
        PyObject *t = PyTuple_New(4);
        if (a == NULL || b == NULL || inner == NULL || t == NULL) {
            Py_XDECREF(a);
            Py_XDECREF(b);
            Py_XDECREF(inner);
            Py_XDECREF(t);
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(inner, 0, Py_NewRef(a));
        PyTuple_SET_ITEM(inner, 1, Py_NewRef(tag));
        PyTuple_SET_ITEM(t, 0, a); /* steals */
        PyTuple_SET_ITEM(t, 1, b);
        Py_INCREF(tag);
        PyTuple_SET_ITEM(t, 2, tag);
        PyTuple_SET_ITEM(t, 3, inner);
        PyList_SET_ITEM(list, i, t);
    }
    return list;
}

/* index(list) -> new dict {t[0]: t} over the list's tuples. NULL on error. */
static PyObject *index_by_key(PyObject *list)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(list, i);
        Py_INCREF(t); /* hold it across calls that may run arbitrary code */
        PyObject *key = PyTuple_GET_ITEM(t, 0);
        Py_INCREF(key);
        int rc = PyDict_SetItem(d, key, t);
        Py_DECREF(key);
        Py_DECREF(t);
        if (rc < 0) {
            Py_DECREF(d);
            return NULL;
        }
    }
    return d;
}

/* walk_list(list, callback, every, &sum): each tuple's items held and valued, and every
 * `every`-th tuple passed to callback, whose int result joins the sum. -1 on error. */
static int walk_list(PyObject *list, PyObject *callback, Py_ssize_t every, long long *sum)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(list, i);
        Py_INCREF(t);
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(t); j++) {
            PyObject *x = PyTuple_GET_ITEM(t, j);
            Py_INCREF(x);
            *sum += value_of(x);
            Py_DECREF(x);
        }
        if (every > 0 && i % every == 0) {
            PyObject *r = PyObject_CallOneArg(callback, t);
            if (r == NULL) {
                Py_DECREF(t);
                return -1;
            }
            *sum += value_of(r);
            Py_DECREF(r);
        }
        Py_DECREF(t);
    }
    return 0;
}

/* walk_dict(d, &sum): every (key, value) held, the value looked up again by key. */
static int walk_dict(PyObject *d, long long *sum)
{
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(d, &pos, &k, &v)) {
        Py_INCREF(k);
        Py_INCREF(v);
        PyObject *again = PyDict_GetItemWithError(d, k); /* borrowed */
        if (again == NULL) {
            Py_DECREF(v);
            Py_DECREF(k);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_KeyError, "key vanished");
            return -1;
        }
        *sum += value_of(k) + (again == v);
        Py_DECREF(v);
        Py_DECREF(k);
    }
    return 0;
}

/* pairs(list) -> new list of (t[1], t[3]) pairs, through the iterator protocol. */
static PyObject *pairs(PyObject *list)
{
    PyObject *out = PyList_New(0), *it = PyObject_GetIter(list), *t;
    if (out == NULL || it == NULL) {
        Py_XDECREF(out);
        Py_XDECREF(it);
        return NULL;
    }
    while ((t = PyIter_Next(it)) != NULL) {
        PyObject *p = PyTuple_New(2);
        if (p == NULL) {
            Py_DECREF(t);
            break;
        }
        PyTuple_SET_ITEM(p, 0, Py_NewRef(PyTuple_GET_ITEM(t, 1)));
        PyTuple_SET_ITEM(p, 1, Py_NewRef(PyTuple_GET_ITEM(t, 3)));
        int rc = PyList_Append(out, p);
        Py_DECREF(p);
        Py_DECREF(t);
        if (rc < 0)
            break;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/*
 * run(n, callback, every=8) -> checksum: one pass of the workload on n items — build the
 * list, index it in a dict, walk the list (calling back every `every`-th tuple; 0: never),
 * walk the dict, build the pairs list through the iterator, walk it, then drop everything
 * (the frees happen in CPython's deallocators). The checksum is the same for every build
 * of this file; raises what the callback or an allocation raised.
 */
static PyObject *run(PyObject *self, PyObject *args)
{
    Py_ssize_t n, every = 8;
    PyObject *callback;
    (void)self;
    if (!PyArg_ParseTuple(args, "nO|n", &n, &callback, &every))
        return NULL;
    if (n < 0 || every < 0 || !PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_ValueError, "want n >= 0, a callable and every >= 0");
        return NULL;
    }
    PyObject *tag = PyUnicode_FromString("workload-tag");
    if (tag == NULL)
        return NULL;
    long long sum = 0;
    PyObject *list = NULL, *d = NULL, *pl = NULL, *result = NULL;
    if ((list = build(n, tag)) == NULL || (d = index_by_key(list)) == NULL ||
        walk_list(list, callback, every, &sum) < 0 || walk_dict(d, &sum) < 0 ||
        (pl = pairs(list)) == NULL || walk_list(pl, callback, 0, &sum) < 0)
        goto done;
    result = PyLong_FromLongLong(sum);
done:
    Py_XDECREF(pl);
    Py_XDECREF(d);
    Py_XDECREF(list);
    Py_DECREF(tag);
    return result;
}

/* hold(obj, k) -> None: k INCREF/DECREF pairs of obj (gdb_bench.py's object of interest:
 * a known address with a known number of records). */
static PyObject *hold(PyObject *self, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t k;
    (void)self;
    if (!PyArg_ParseTuple(args, "On", &obj, &k))
        return NULL;
    for (Py_ssize_t i = 0; i < k; i++) {
        Py_INCREF(obj);
        Py_DECREF(obj);
    }
    Py_RETURN_NONE;
}

/* keep(obj) -> None: one INCREF never given back (gdb_bench.py's leak for `pyref leaks`). */
static PyObject *keep(PyObject *self, PyObject *obj)
{
    (void)self;
    Py_INCREF(obj);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"run", run, METH_VARARGS, "run(n, callback, every=8) -> checksum: one workload pass"},
    {"hold", hold, METH_VARARGS, "hold(obj, k): k INCREF/DECREF pairs of obj"},
    {"keep", keep, METH_O, "keep(obj): one INCREF never released"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, WL_STR(MODNAME), "pyref bench-compare workload", -1, methods,
};

PyMODINIT_FUNC WL_CAT(PyInit_, MODNAME)(void)
{
    return PyModule_Create(&module);
}
