"""decide.py — how each C-API name is wrapped, and the rule its caller follows.

The recipes the generated header knows (MACROS, ALLOCS, ALIASES, PARSERS), `decide()`, which
gives each Api its recipe or the reason it is not wrapped, and the per-API text both
outputs share: the caller's rule (`rules`), the ring operations a call records
(`recorded_as`), a one-line summary (`describe`).
"""
import collections

from refdata import Api, parse_prototype

# Names that are macros (or a macro over a static inline function) in the headers. Their
# wrapper cannot call the name again after #undef, so the interpreter's definition is first
# captured into a static inline function (while it still means the original), then the name
# is redefined. `forms` gives the capture per version: "slot" for a macro that is an lvalue
# (the wrapper returns *slot, so `&PyTuple_GET_ITEM(t, 0)` and `Py_CLEAR(PyList_GET_ITEM(l,
# i))` keep compiling), "value" for an rvalue, "inline" for a deprecated static inline function
# the wrapper calls directly (a capture would raise its deprecation warning in every file).
Macro = collections.namedtuple("Macro", "params ret forms")
MACROS = collections.OrderedDict([
    ("PyTuple_GET_ITEM", Macro("PyObject *p, Py_ssize_t pos", "PyObject *", [(None, "slot")])),
    ("PyList_GET_ITEM", Macro("PyObject *list, Py_ssize_t i", "PyObject *", [(None, "slot")])),
    # (cond ? PyList_GET_ITEM : PyTuple_GET_ITEM): an lvalue in C++ only.
    ("PySequence_Fast_GET_ITEM", Macro("PyObject *o, Py_ssize_t i", "PyObject *",
                                       [("defined(__cplusplus)", "slot"), (None, "value")])),
    ("PyCell_GET", Macro("PyObject *ob", "PyObject *",
                         [("PY_VERSION_HEX < 0x030C0000", "slot"), (None, "value")])),
    ("PyMethod_GET_FUNCTION", Macro("PyObject *im", "PyObject *",
                                    [("PY_VERSION_HEX < 0x030C0000", "slot"), (None, "value")])),
    ("PyMethod_GET_SELF", Macro("PyObject *im", "PyObject *",
                                [("PY_VERSION_HEX < 0x030C0000", "slot"), (None, "value")])),
    ("PyInstanceMethod_GET_FUNCTION", Macro("PyObject *im", "PyObject *",
                                            [("PY_VERSION_HEX < 0x030C0000", "slot"),
                                             (None, "value")])),
    ("PyWeakref_GET_OBJECT", Macro("PyObject *ref", "PyObject *",
                                   [("PY_VERSION_HEX < 0x030D0000", "value"), (None, "inline")])),
    ("PySequence_ITEM", Macro("PyObject *o, Py_ssize_t i", "PyObject *", [(None, "value")])),
    ("PyTuple_SET_ITEM", Macro("PyObject *p, Py_ssize_t pos, PyObject *o", "void",
                               [(None, "value")])),
    ("PyList_SET_ITEM", Macro("PyObject *list, Py_ssize_t i, PyObject *o", "void",
                              [(None, "value")])),
    ("PyCell_SET", Macro("PyObject *cell, PyObject *value", "void", [(None, "value")])),
])

# Typed allocation macros: PyObject_New(TYPE, typeobj) == ((TYPE *)_PyObject_New(typeobj)).
ALLOCS = collections.OrderedDict([
    ("PyObject_New", "PyTypeObject *typeobj"),
    ("PyObject_NewVar", "PyTypeObject *typeobj, Py_ssize_t n"),
    ("PyObject_GC_New", "PyTypeObject *typeobj"),
    ("PyObject_GC_NewVar", "PyTypeObject *typeobj, Py_ssize_t n"),
])

# Object-like aliases in the headers: under the condition, NAME is `#define NAME TARGET`, so
# a call of NAME reaches TARGET; the wrapper is put on TARGET and NAME is left alone.
SIZE_T_CLEAN = "defined(PY_SSIZE_T_CLEAN) && PY_VERSION_HEX < 0x030D0000"
TRACE_REFS = "defined(Py_TRACE_REFS) && PY_VERSION_HEX < 0x030D0000"
ALIASES = collections.OrderedDict([
    ("Py_BuildValue", ("_Py_BuildValue_SizeT", SIZE_T_CLEAN)),
    ("Py_VaBuildValue", ("_Py_VaBuildValue_SizeT", SIZE_T_CLEAN)),
    ("PyObject_CallFunction", ("_PyObject_CallFunction_SizeT", SIZE_T_CLEAN)),
    ("PyObject_CallMethod", ("_PyObject_CallMethod_SizeT", SIZE_T_CLEAN)),
    ("PyArg_ParseTuple", ("_PyArg_ParseTuple_SizeT", SIZE_T_CLEAN)),
    ("PyArg_ParseTupleAndKeywords", ("_PyArg_ParseTupleAndKeywords_SizeT", SIZE_T_CLEAN)),
    ("_PyObject_CallMethodId", ("_PyObject_CallMethodId_SizeT", SIZE_T_CLEAN)),
    ("PyModule_Create2", ("PyModule_Create2TraceRefs", TRACE_REFS)),
    ("PyModule_FromDefAndSpec2", ("PyModule_FromDefAndSpec2TraceRefs", TRACE_REFS)),
])

# Argument parsers, wrapped by the hand-written code of c_helpers/shim/pyref_capi_prelude.h,
# with the prototypes the table shows for them (refcounts.dat lacks them).
PARSERS = {
    "PyArg_ParseTuple": "int(PyObject *args, const char *format, ...)",
    "PyArg_ParseTupleAndKeywords":
        "int(PyObject *args, PyObject *kw, const char *format, char **keywords, ...)",
    "PyArg_UnpackTuple":
        "int(PyObject *args, const char *name, Py_ssize_t min, Py_ssize_t max, ...)",
}

# Value builders, wrapped by the hand-written code of pyref_capi_prelude.h: their format is
# walked for the "N" arguments, which the call steals (STEAL records), then the result is
# recorded NEW. (Their PY_SSIZE_T_CLEAN aliases, ALIASES above, are handled there too.)
BUILDERS = ("Py_BuildValue", "Py_VaBuildValue")

# Macros the generated header defines for the prelude's hand-written parser wrappers, which
# test them: (macro, the condition under which it is defined, what it means).
PRELUDE_CONDITIONS = (
    ("PYREF__SIZE_T_ALIASES", SIZE_T_CLEAN,
     "the PY_SSIZE_T_CLEAN names are aliases of the _SizeT functions"),
)


def decide(apis):
    """Fills api.recipe: 'macro', 'alloc', 'alias', 'parser', 'plain' or None, and
    api.unwrapped (why not) for names with reference semantics that are not wrapped."""
    for name, proto in PARSERS.items():
        if name not in apis:
            api = apis[name] = Api(name)
            api.ret_type, api.params = parse_prototype(proto, "decide.PARSERS")
            api.notes.append("outputs of O, O!, S, Y, U are borrowed from the argument "
                             "tuple (or the keyword dict)")
    for api in apis.values():
        api.recipe, api.unwrapped = None, None
        semantic = api.returns in ("new", "borrowed") or api.steals or api.outs \
            or api.name in PARSERS
        if api.since is None and "3.11" not in api.versions and api.versions:
            api.since = "3.14"  # only in main (3.14): refined by a 'since' override
        if api.until is None and "main" not in api.versions and api.versions:
            api.until = "3.12"  # only in 3.11: refined by an 'until' override
        if api.skip:
            api.unwrapped = api.skip
            continue
        if not semantic:
            continue
        if api.via:
            api.unwrapped = "macro over %s, which records it" % api.via[0]
        elif api.name in PARSERS:
            api.recipe = "parser"
        elif api.name in BUILDERS:
            api.recipe = "builder"
        elif api.name in MACROS:
            api.recipe = "macro"
        elif api.name in ALLOCS:
            api.recipe = "alloc"
        elif api.name in ALIASES:
            api.recipe = "alias"
        elif "TYPE" in api.ret_type:
            api.unwrapped = "a macro taking a type name, without a recipe"
        else:
            api.recipe = "plain"


def rules(api):
    """The caller's rule for a call of `api`, one line."""
    if api.rule:
        return api.rule
    parts = []
    if api.returns == "new":
        parts.append("DECREF the result when done")
    elif api.returns == "borrowed":
        parts.append("do not DECREF; INCREF it if you keep it past a call that may run "
                     "Python code")
    elif api.returns == "null":
        parts.append("always returns NULL with an exception set: there is nothing to release")
    for arg, always, _ in api.steals:
        if always:
            parts.append("the reference to %s is stolen even if the call fails: do not DECREF "
                         "it afterwards" % arg.upper())
        else:
            parts.append("the reference to %s is stolen only if the call succeeds: DECREF it "
                         "yourself when it fails" % arg.upper())
    for arg, kind, _, _, _ in api.outs:
        if kind == "new":
            parts.append("*%s receives a new reference: DECREF it when done" % arg.upper())
        else:
            parts.append("*%s receives a borrowed reference: do not DECREF it" % arg.upper())
    if api.name in PARSERS:
        parts.append("the O, O!, S, Y and U outputs are borrowed from the arguments: do not "
                     "DECREF them; INCREF one you keep")
    if not parts:
        parts.append("no reference changes hands: your references are unchanged")
    return "; ".join(parts)


def recorded_as(api):
    """The ring operations the shim writes for a call of this API."""
    if not api.recipe:
        return ()
    ops = []
    if api.returns == "new" or any(o[1] == "new" for o in api.outs):
        ops.append("NEW")
    if api.returns == "borrowed" or any(o[1] == "borrowed" for o in api.outs) \
            or api.recipe == "parser":
        ops.append("BORROW")
    if api.steals or api.recipe == "builder":
        ops.append("STEAL")
    return tuple(ops)


def describe(api):
    """'borrowed, container p[pos], steals o always, ...': the wrapper's comment."""
    bits = []
    if api.returns in ("new", "borrowed"):
        bits.append(api.returns)
    if api.container:
        bits.append("container %s%s" % (api.container[0],
                                         "[%s]" % api.index if api.index else ""))
    for arg, always, _ in api.steals:
        bits.append("steals %s %s" % (arg, "always" if always else "on success"))
    for arg, kind, when, _, _ in api.outs:
        bits.append("*%s %s (%s)" % (arg, kind, when))
    return ", ".join(bits)
