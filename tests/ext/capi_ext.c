/*
 * capi_ext.c — test extension for reference origins (c_helpers/shim/pyref_capi.h).
 *
 * Built through the pyref shim by tests/system/test_capi_origins.py for every interpreter, as C
 * and as C++, with and without PY_SSIZE_T_CLEAN, and with Py_LIMITED_API (compile only).
 * Each exercise_* function makes the wrapped calls on lines marked `/ * @marker * /`, keeps
 * the objects alive in a module list (so addresses stay unique until the core is taken),
 * and returns {name: id(object)} for the test to match against the decoded records.
 * `semantics()` checks in C that the wrappers evaluate arguments once, keep lvalues and
 * return types, and `argfmt()` exposes the PyArg_* format walker to unit tests.
 */
#include <Python.h>

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#ifndef CAPI_EXT_NAME
#define CAPI_EXT_NAME capi_ext
#endif
#define CAPI_STR_(x) #x
#define CAPI_STR(x) CAPI_STR_(x)
#define CAPI_CAT_(a, b) a##b
#define CAPI_CAT(a, b) CAPI_CAT_(a, b)

static PyObject *keep; /* list: everything the exercises made, alive until exit */

/* Stores o in keep and d[name] = id(o). Returns 0, or -1 with an exception. */
static int note(PyObject *d, const char *name, PyObject *o)
{
    PyObject *id = PyLong_FromVoidPtr(o);
    int rc = id == NULL || PyDict_SetItemString(d, name, id) < 0 || PyList_Append(keep, o) < 0;
    Py_XDECREF(id);
    return rc ? -1 : 0;
}

/* A fresh object no other code shares (an int would be cached or immortal). */
static PyObject *fresh(const char *tag)
{
    return PyUnicode_FromFormat("capi-%s-%p", tag, (void *)&keep);
}

/* ---- NEW -------------------------------------------------------------------------------- */
static PyObject *exercise_new(PyObject *self, PyObject *unused)
{
    PyObject *d, *list, *built, *text, *called;
    (void)self, (void)unused;
    d = PyDict_New();
    list = PyList_New(0); /* @new-list */
    built = Py_BuildValue("(is)", 7, "x"); /* @new-build */
    text = PyUnicode_FromString("pyref-capi"); /* @new-unicode */
    called = PyObject_CallFunction((PyObject *)&PyList_Type, "((ii))", 1, 2); /* @new-call */
    if (d == NULL || list == NULL || built == NULL || text == NULL || called == NULL)
        goto fail;
    if (note(d, "list", list) || note(d, "build", built) || note(d, "unicode", text) ||
        note(d, "call", called))
        goto fail;
    Py_DECREF(list);
    Py_DECREF(built);
    Py_DECREF(text);
    Py_DECREF(called);
    return d;
fail:
    Py_XDECREF(d);
    Py_XDECREF(list);
    Py_XDECREF(built);
    Py_XDECREF(text);
    Py_XDECREF(called);
    return NULL;
}

/* ---- Py_BuildValue's "N" (STEAL), underscore calls ------------------------------------- */
static PyObject *exercise_build(PyObject *self, PyObject *unused)
{
    PyObject *d, *n1, *o1, *n2, *n3, *n4, *r1 = NULL, *r2 = NULL, *r3 = NULL;
    (void)self, (void)unused;
    d = PyDict_New();
    n1 = fresh("n1"), o1 = fresh("o1"), n2 = fresh("n2"), n3 = fresh("n3"), n4 = fresh("n4");
    if (d == NULL || !n1 || !o1 || !n2 || !n3 || !n4)
        return NULL;
    if (note(d, "n1", n1) || note(d, "o1", o1) || note(d, "n2", n2) || note(d, "n3", n3) ||
        note(d, "n4", n4))
        return NULL;
    r1 = Py_BuildValue("(NO)", n1, o1); /* @build-tuple */
    r2 = Py_BuildValue("N", n2); /* @build-alone */
    r3 = Py_BuildValue("idN[N]", 1, 2.5, n3, n4); /* @build-mixed */
    if (!r1 || !r2 || !r3 || note(d, "r1", r1) || note(d, "r2", r2) || note(d, "r3", r3))
        return NULL;
    Py_DECREF(r1);
    Py_DECREF(r2);
    Py_DECREF(r3);
    Py_DECREF(o1);
#ifndef Py_LIMITED_API
    PyObject *name = PyUnicode_FromString("exercise_build");
    PyObject *attr = name ? _PyType_Lookup(Py_TYPE(keep), name) : NULL; /* @type-lookup */
    (void)attr; /* a list has no such attribute: NULL, no record */
    attr = name ? _PyType_Lookup(&PyList_Type, PyUnicode_InternFromString("append")) : NULL; /* @type-lookup-hit */
    if (attr == NULL || note(d, "append", attr) || note(d, "list_type", (PyObject *)&PyList_Type))
        return NULL;
    Py_XDECREF(name);
#endif
    return d;
}

/* ---- BORROW ----------------------------------------------------------------------------- */
/* exercise_borrow(tuple, list, dict): tuple and list of at least two items, dict with "k". */
static PyObject *exercise_borrow(PyObject *self, PyObject *args)
{
    PyObject *t, *l, *dict, *d, *fast = NULL, *b_tuple, *b_list, *b_dict;
#ifndef Py_LIMITED_API
    PyObject *b_tuple_m, *b_list_m, *b_fast;
#endif
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyTuple_Type, &t, &PyList_Type, &l, &PyDict_Type, &dict)) /* @parse-borrow */
        return NULL;
    if ((d = PyDict_New()) == NULL)
        return NULL;
    b_tuple = PyTuple_GetItem(t, 0); /* @borrow-tuple */
    b_list = PyList_GetItem(l, 1); /* @borrow-list */
    b_dict = PyDict_GetItemString(dict, "k"); /* @borrow-dict */
    if (b_tuple == NULL || b_list == NULL || b_dict == NULL)
        goto fail;
    if (note(d, "tuple_item", b_tuple) || note(d, "list_item", b_list) ||
        note(d, "dict_item", b_dict))
        goto fail;
#ifndef Py_LIMITED_API
    b_tuple_m = PyTuple_GET_ITEM(t, 1); /* @borrow-tuple-macro */
    b_list_m = PyList_GET_ITEM(l, 0); /* @borrow-list-macro */
    fast = PySequence_Fast(t, "not a sequence"); /* @new-fast */
    if (fast == NULL)
        goto fail;
    b_fast = PySequence_Fast_GET_ITEM(fast, 1); /* @borrow-fast */
    if (note(d, "tuple_item_m", b_tuple_m) || note(d, "list_item_m", b_list_m) ||
        note(d, "fast", fast) || note(d, "fast_item", b_fast))
        goto fail;
    Py_DECREF(fast);
#endif
    return d;
fail:
    Py_XDECREF(fast);
    Py_DECREF(d);
    return NULL;
}

/* ---- STEAL ------------------------------------------------------------------------------ */
static PyObject *exercise_steal(PyObject *module, PyObject *unused)
{
    (void)unused;
    PyObject *d = PyDict_New(), *l = PyList_New(2), *t = PyTuple_New(2);
    PyObject *o1 = fresh("list"), *o2 = fresh("list-m"), *o3 = fresh("tuple");
    PyObject *o4 = fresh("tuple-m"), *o5 = fresh("module"), *o6 = fresh("module-fail");
    if (!d || !l || !t || !o1 || !o2 || !o3 || !o4 || !o5 || !o6)
        return NULL; /* leaks on MemoryError: a test */
    if (note(d, "list", l) || note(d, "tuple", t) || note(d, "item_list", o1) ||
        note(d, "item_list_m", o2) || note(d, "item_tuple", o3) ||
        note(d, "item_tuple_m", o4) || note(d, "item_module", o5))
        return NULL;
    PyList_SetItem(l, 0, o1); /* @steal-list */
    PyTuple_SetItem(t, 0, o3); /* @steal-tuple */
#ifndef Py_LIMITED_API
    PyList_SET_ITEM(l, 1, o2); /* @steal-list-macro */
    PyTuple_SET_ITEM(t, 1, o4); /* @steal-tuple-macro */
#else
    PyList_SetItem(l, 1, o2);
    PyTuple_SetItem(t, 1, o4);
#endif
    if (PyModule_AddObject(module, "added", o5) != 0) /* @steal-addobject */
        return NULL;
    if (PyModule_AddObject(l, "nope", o6) == 0) /* @addobject-fail */
        return NULL;
    PyErr_Clear();
    Py_DECREF(o6); /* the failed call did not take it */
#if PY_VERSION_HEX >= 0x030D0000 && (!defined(Py_LIMITED_API) || Py_LIMITED_API >= 0x030D0000)
    PyObject *o7 = fresh("module-add");
    if (o7 == NULL || note(d, "item_module_add", o7))
        return NULL;
    if (PyModule_Add(module, "added2", o7) != 0) /* @steal-add */
        return NULL;
#endif
    Py_DECREF(l);
    Py_DECREF(t);
    return d;
}

/* ---- Output arguments ------------------------------------------------------------------- */
/* exercise_out(dict) -> {"value": id} (3.13: PyDict_GetItemRef's new reference) */
static PyObject *exercise_out(PyObject *self, PyObject *dict)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value, *d = PyDict_New();
    (void)self;
    if (d == NULL || !PyDict_Check(dict))
        return NULL;
    while (PyDict_Next(dict, &pos, &key, &value)) /* @dict-next */
        ;
#if PY_VERSION_HEX >= 0x030D0000 && (!defined(Py_LIMITED_API) || Py_LIMITED_API >= 0x030D0000)
    PyObject *got = NULL;
    if (PyDict_GetItemRef(dict, key, &got) != 1) /* @getitemref */
        return NULL;
    if (note(d, "value", got))
        return NULL;
    Py_DECREF(got);
#endif
    return d;
}

/* ---- PyArg_* ---------------------------------------------------------------------------- */
/* exercise_parse(a, int b[, c]) */
static PyObject *exercise_parse(PyObject *self, PyObject *args)
{
    PyObject *a, *b, *c = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!|O:exercise_parse", &a, &PyLong_Type, &b, &c)) /* @parse */
        return NULL;
    return Py_BuildValue("(OOO)", a, b, c ? c : Py_None);
}

/* exercise_parse_kw(a, b=None, *, c=None) */
static PyObject *exercise_parse_kw(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {(char *)"a", (char *)"b", (char *)"c", NULL};
    PyObject *a, *b = Py_None, *c = Py_None;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O$O", kwlist, &a, &b, &c)) /* @parse-kw */
        return NULL;
    return Py_BuildValue("(OOO)", a, b, c);
}

/* exercise_nested((a, b), c) */
static PyObject *exercise_nested(PyObject *self, PyObject *args)
{
    PyObject *a, *b, *c;
    (void)self;
    if (!PyArg_ParseTuple(args, "(OO)O", &a, &b, &c)) /* @parse-nested */
        return NULL;
    Py_RETURN_NONE;
}

/* exercise_unpack(a[, b[, c]]) */
static PyObject *exercise_unpack(PyObject *self, PyObject *args)
{
    PyObject *a, *b = NULL, *c = NULL;
    (void)self;
    if (!PyArg_UnpackTuple(args, "exercise_unpack", 1, 3, &a, &b, &c)) /* @unpack */
        return NULL;
    Py_RETURN_NONE;
}

/* ---- The format walker, for unit tests -------------------------------------------------- */
#ifdef PYREF_CAPI_ACTIVE /* not in the PYREF_CAPI_OFF build the compile matrix compares with */
#define ARGFMT_SLOTS 24
static int argfmt_walk(struct pyref__argout *outs, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    int n = pyref__argfmt_outputs(fmt, &va, outs, PYREF__ARGOUT_MAX);
    va_end(va);
    return n;
}

/* argfmt(format) -> [(slot, arg, pos, depth), ...] or None when the walker refuses the
 * format. slot = which of the pointers passed in order the output is. */
static PyObject *argfmt(PyObject *self, PyObject *arg)
{
    void *s[ARGFMT_SLOTS];
    struct pyref__argout outs[PYREF__ARGOUT_MAX];
    (void)self;
    const char *fmt = PyUnicode_AsUTF8AndSize(arg, NULL);
    int n;
    if (fmt == NULL)
        return NULL;
    n = argfmt_walk(outs, fmt, &s[0], &s[1], &s[2], &s[3], &s[4], &s[5], &s[6], &s[7],
                        &s[8], &s[9], &s[10], &s[11], &s[12], &s[13], &s[14], &s[15],
                        &s[16], &s[17], &s[18], &s[19], &s[20], &s[21], &s[22], &s[23]);
    if (n < 0)
        Py_RETURN_NONE;
    PyObject *res = PyList_New(0);
    for (int k = 0; res != NULL && k < n; k++) {
        PyObject *item = Py_BuildValue("(niii)", (Py_ssize_t)((void **)outs[k].out - s),
                                       outs[k].arg, outs[k].pos, outs[k].depth);
        if (item == NULL || PyList_Append(res, item) < 0)
            Py_CLEAR(res);
        Py_XDECREF(item);
    }
    return res;
}
#endif

/* ---- Semantics checks ------------------------------------------------------------------- */
static int failures;
static char failure[512];
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond) && failures++ == 0)                                                    \
            PyOS_snprintf(failure, sizeof failure, "line %d: %s", __LINE__, #cond);         \
    } while (0)

#ifdef __cplusplus
#include <type_traits>
/* decltype of a statement expression may not be a template argument: name it first. */
#define SAME_TYPE(a, b)                                                                    \
    __extension__({                                                                        \
        typedef decltype(a) same_a_;                                                       \
        typedef decltype(b) same_b_;                                                       \
        std::is_same<same_a_, same_b_>::value;                                             \
    })
#else
#define SAME_TYPE(a, b) __builtin_types_compatible_p(__typeof__(a), __typeof__(b))
#endif

static PyObject *counted(PyObject *o, int *n)
{
    ++*n;
    return o;
}

#ifndef Py_LIMITED_API
static PyTypeObject *counted_type(PyTypeObject *t, int *n)
{
    ++*n;
    return t;
}

typedef struct {
    PyObject_HEAD
    int value;
} ThingObject;

static PyTypeObject Thing_Type; /* set up in the module init */
#endif

/* semantics() -> None, or AssertionError naming the first failed check. */
/* An "O&" converter of Py_BuildValue: a new reference to its argument. */
static PyObject *capi_identity(void *p)
{
    return Py_NewRef((PyObject *)p);
}

static PyObject *semantics(PyObject *self, PyObject *unused)
{
    int n = 0, i = 0;
    (void)self, (void)unused;
    failures = 0;
    PyObject *a = fresh("a"), *b = fresh("b");
    PyObject *t = PyTuple_Pack(2, a, b);
    PyObject *l = PyList_New(0);
    PyObject *dict = PyDict_New();
    if (!a || !b || !t || !l || !dict || PyList_Append(l, a) || PyList_Append(l, b) ||
        PyDict_SetItemString(dict, "k", a))
        return NULL;

    /* NEW, variadic form: the size is evaluated once. */
    Py_ssize_t size = 3;
    PyObject *l2 = PyList_New(size++);
    CHECK(size == 4 && l2 != NULL && PyList_Size(l2) == 3);
    CHECK(SAME_TYPE(PyList_New(0), (PyList_New)(0)));
    Py_XDECREF(l2);

    /* BORROW with container and index: each argument once, same result and type. */
    n = 0, i = 0;
    PyObject *x = PyTuple_GetItem(counted(t, &n), i++);
    CHECK(n == 1 && i == 1 && x == a);
    CHECK(SAME_TYPE(PyTuple_GetItem(t, 0), (PyTuple_GetItem)(t, 0)));
    PyObject *outer = PyList_New(0);
    CHECK(outer != NULL && PyList_Append(outer, t) == 0);
    x = PyTuple_GetItem(PyList_GetItem(outer, 0), 1); /* nested wrappers: no shadowing */
    CHECK(x == b);
    Py_XDECREF(outer);
    n = 0;
    x = PyDict_GetItemString(counted(dict, &n), "k");
    CHECK(n == 1 && x == a);
    n = 0;
    x = PyList_GetItem(counted(l, &n), 5); /* IndexError: NULL, nothing recorded */
    CHECK(n == 1 && x == NULL && PyErr_Occurred());
    PyErr_Clear();

    /* STEAL: the stolen reference and the container once each. */
    PyObject *l3 = PyList_New(2);
    n = 0, i = 0;
    int rc = PyList_SetItem(counted(l3, &n), i++, counted(Py_NewRef(a), &n));
    CHECK(rc == 0 && n == 2 && i == 1 && PyList_GetItem(l3, 0) == a);
    CHECK(SAME_TYPE(PyList_SetItem(l3, 0, NULL), (PyList_SetItem)(l3, 0, NULL)));
    rc = PyList_SetItem(l3, 9, Py_NewRef(b)); /* fails, still steals */
    CHECK(rc == -1);
    PyErr_Clear();
    PyObject *m = PyModule_New("capi_scratch");
    n = 0;
    rc = PyModule_AddObject(counted(m, &n), "x", counted(Py_NewRef(b), &n));
    CHECK(rc == 0 && n == 2);
    Py_XDECREF(m);

    /* Output arguments: PyDict_Next's pointers once, result unchanged. */
    Py_ssize_t pos = 0;
    PyObject *key = NULL, *value = NULL, **pk = &key;
    int more = PyDict_Next(dict, &pos, pk++, &value);
    CHECK(more == 1 && pk == &key + 1 && value == a);
    more = PyDict_Next(dict, &pos, &key, &value);
    CHECK(more == 0);

#ifndef Py_LIMITED_API
    /* Macros: lvalues stay lvalues, arguments once. */
    PyObject **items = &PyTuple_GET_ITEM(t, 0);
    CHECK(items[0] == a && items[1] == b);
    n = 0, i = 0;
    x = PyTuple_GET_ITEM(counted(t, &n), i++);
    CHECK(n == 1 && i == 1 && x == a);
    n = 0, i = 1;
    x = PyList_GET_ITEM(counted(l, &n), i--);
    CHECK(n == 1 && i == 0 && x == b);
    PyObject *fast = PySequence_Fast(l, "");
    n = 0, i = 0;
    x = PySequence_Fast_GET_ITEM(counted(fast, &n), i++);
    CHECK(n == 1 && i == 1 && x == a);
    Py_XDECREF(fast);
    CHECK(SAME_TYPE(PyTuple_GET_ITEM(t, 0), ((PyTupleObject *)t)->ob_item[0]));
    PyObject *l4 = PyList_New(2);
    n = 0, i = 0;
    PyList_SET_ITEM(counted(l4, &n), i++, counted(Py_NewRef(a), &n));
    PyList_SET_ITEM(l4, i, Py_NewRef(b));
    CHECK(n == 2 && i == 1 && PyList_GET_ITEM(l4, 0) == a);
    Py_CLEAR(PyList_GET_ITEM(l4, 1)); /* an lvalue macro under Py_CLEAR */
    CHECK(PyList_GET_ITEM(l4, 1) == NULL);
    PyList_GET_ITEM(l4, 1) = Py_NewRef(b); /* and assignable */
    CHECK(PyList_GET_ITEM(l4, 1) == b);
    Py_XDECREF(l4);
    PyObject *t2 = PyTuple_New(1);
    n = 0;
    PyTuple_SET_ITEM(counted(t2, &n), 0, Py_NewRef(a));
    CHECK(n == 1 && PyTuple_GET_ITEM(t2, 0) == a);
    Py_XDECREF(t2);

    /* Typed allocation: the TYPE argument shapes the result type. */
    n = 0;
    ThingObject *thing = PyObject_New(ThingObject, counted_type(&Thing_Type, &n));
    CHECK(n == 1 && thing != NULL && Py_TYPE(thing) == &Thing_Type);
    CHECK(SAME_TYPE(PyObject_New(ThingObject, &Thing_Type), (ThingObject *)NULL));
    if (thing != NULL)
        thing->value = 1;
    Py_XDECREF(thing);
#endif

    /* PyArg_*: each output pointer once; optional outputs untouched when absent. */
    PyObject *args = PyTuple_Pack(1, a);
    PyObject *out1 = NULL, *out2 = b, **po = &out1;
    n = 0;
    rc = PyArg_ParseTuple(counted(args, &n), "O|O", po++, &out2);
    CHECK(rc == 1 && n == 1 && po == &out1 + 1 && out1 == a && out2 == b);
    out1 = NULL, out2 = b, po = &out1;
    rc = PyArg_UnpackTuple(counted(args, &n), "f", 1, 2, po++, &out2);
    CHECK(rc == 1 && n == 2 && po == &out1 + 1 && out1 == a && out2 == b);
    rc = PyArg_UnpackTuple(args, "f", 2, 2, &out1, &out2); /* too few items */
    CHECK(rc == 0 && PyErr_Occurred());
    PyErr_Clear();
    Py_XDECREF(args);

    /* Py_BuildValue's s# length type follows PY_SSIZE_T_CLEAN, as without pyref. */
#ifdef PY_SSIZE_T_CLEAN
    PyObject *s = Py_BuildValue("s#", "abcdef", (Py_ssize_t)3);
    CHECK(s != NULL && PyUnicode_GetLength(s) == 3);
    /* ... and so does PyArg_ParseTuple's: a 64-bit length, all of it written */
    PyObject *sargs = s ? PyTuple_Pack(1, s) : NULL;
    const char *str = NULL;
    Py_ssize_t len = (Py_ssize_t)-1;
    CHECK(sargs != NULL && PyArg_ParseTuple(sargs, "s#", &str, &len) && len == 3 &&
          memcmp(str, "abc", 3) == 0);
    Py_XDECREF(sargs);
    Py_XDECREF(s);
#endif

    /* Py_BuildValue: the same value as without pyref, "N" taken, "O" INCREF'd, each
     * argument once, whatever the units' C types (doubles, long long, "s#", "O&") */
    {
        PyObject *nn = fresh("bv-n"), *oo = fresh("bv-o");
        Py_ssize_t before_o = Py_REFCNT(oo);
        n = 0;
        PyObject *bv = Py_BuildValue("(dLzN{sO}O&)", 0.5, (long long)1 << 40, "ab",
                                     counted(nn, &n), "k", oo, capi_identity, (void *)oo);
        CHECK(n == 1 && bv != NULL && PyTuple_Check(bv) && PyTuple_Size(bv) == 6);
        CHECK(bv != NULL && PyFloat_AsDouble(PyTuple_GetItem(bv, 0)) == 0.5);
        CHECK(bv != NULL && PyLong_AsLongLong(PyTuple_GetItem(bv, 1)) == (long long)1 << 40);
        CHECK(bv != NULL && PyUnicode_GetLength(PyTuple_GetItem(bv, 2)) == 2);
        CHECK(bv != NULL && Py_REFCNT(nn) == 1); /* only the tuple's: "N" took ours */
        CHECK(bv != NULL && PyTuple_GetItem(bv, 3) == nn && PyTuple_GetItem(bv, 5) == oo);
        CHECK(bv != NULL && PyDict_GetItemString(PyTuple_GetItem(bv, 4), "k") == oo);
        CHECK(Py_REFCNT(oo) == before_o + 2); /* in the dict and as O&'s result */
        CHECK(SAME_TYPE(Py_BuildValue("i", 1), (Py_BuildValue)("i", 1)));
        PyObject *none = Py_BuildValue("");
        CHECK(none == Py_None);
        Py_XDECREF(none);
        Py_XDECREF(bv); /* releases nn: the tuple owned the stolen reference */
        Py_DECREF(oo);
    }

    /* The address of a wrapped function is the function's. */
    PyObject *(*fp)(Py_ssize_t) = PyList_New;
    PyObject *l5 = fp(1);
    CHECK(l5 != NULL);
    Py_XDECREF(l5);

    Py_DECREF(a);
    Py_DECREF(b);
    Py_DECREF(t);
    Py_DECREF(l);
    Py_DECREF(dict);
    if (failures) {
        PyErr_Format(PyExc_AssertionError, "%d failed checks; first: %s", failures, failure);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- Module ----------------------------------------------------------------------------- */
static PyMethodDef capi_methods[] = {
    {"exercise_new", exercise_new, METH_NOARGS, NULL},
    {"exercise_borrow", exercise_borrow, METH_VARARGS, NULL},
    {"exercise_steal", exercise_steal, METH_NOARGS, NULL},
    {"exercise_out", exercise_out, METH_O, NULL},
    {"exercise_parse", exercise_parse, METH_VARARGS, NULL},
    {"exercise_parse_kw", (PyCFunction)(void (*)(void))exercise_parse_kw,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"exercise_nested", exercise_nested, METH_VARARGS, NULL},
    {"exercise_unpack", exercise_unpack, METH_VARARGS, NULL},
    {"exercise_build", exercise_build, METH_NOARGS, NULL},
#ifdef PYREF_CAPI_ACTIVE
    {"argfmt", argfmt, METH_O, NULL},
#endif
    {"semantics", semantics, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef capi_module = {
    PyModuleDef_HEAD_INIT, CAPI_STR(CAPI_EXT_NAME), NULL, -1, capi_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC CAPI_CAT(PyInit_, CAPI_EXT_NAME)(void)
{
#ifndef Py_LIMITED_API
    Thing_Type.tp_name = CAPI_STR(CAPI_EXT_NAME) ".Thing";
    Thing_Type.tp_basicsize = sizeof(ThingObject);
    Thing_Type.tp_flags = Py_TPFLAGS_DEFAULT;
    Thing_Type.tp_getattro = PyObject_GenericGetAttr; /* the address, not a call */
    Py_SET_REFCNT((PyObject *)&Thing_Type, 1);         /* a static type is never freed */
    if (PyType_Ready(&Thing_Type) < 0)
        return NULL;
#endif
    keep = PyList_New(0);
    if (keep == NULL)
        return NULL;
    return PyModule_Create(&capi_module);
}
