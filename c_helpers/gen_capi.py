#!/usr/bin/env python3
"""gen_capi.py — generate pyref's C-API origin wrappers and their semantics table.

Reads CPython's reference data (Doc/data/refcounts.dat of 3.11 and of main) and the curated
corrections in c_helpers/capi_overrides.txt, and writes

  c_helpers/shim/pyref_capi.h   macros that wrap the C-API calls whose reference semantics
                                matter, so a traced extension records NEW / BORROW / STEAL
                                (docs/ring-format.md) at each call site;
  gdbext/pyref/capi_table.py    the same knowledge as data for `pyref explain`: for each API
                                what it returns, what it steals, the caller's rule.

Usage:  python3 c_helpers/gen_capi.py [--data DIR] [--overrides FILE]
                                      [--header FILE] [--table FILE]
Defaults: --data ../shared/data (next to the repository), outputs in place. Deterministic:
the same inputs give byte-identical outputs (tests/test_capi_gen.py checks the committed
files). Standard library only.
"""
import argparse
import collections
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
DEFAULT_OVERRIDES = os.path.join(HERE, "capi_overrides.txt")
DEFAULT_HEADER = os.path.join(HERE, "shim", "pyref_capi.h")
DEFAULT_TABLE = os.path.join(ROOT, "gdbext", "pyref", "capi_table.py")
DATA_FILES = (("3.11", "refcounts-3.11.dat"), ("main", "refcounts-main.dat"))

# The oldest version the wrappers support; "main" is the refcounts-main.dat snapshot (3.14),
# the default first version of a name only that file lists.
OLDEST = (3, 10)


class GenError(Exception):
    """A problem in the inputs: reported as one line, exit status 1."""


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------
Param = collections.namedtuple("Param", "type name effect comment")


class Api:
    """Everything known about one C-API name, before the decision how to wrap it."""

    def __init__(self, name):
        self.name = name
        self.versions = []        # reference-data files that list it: "3.11", "main"
        self.ret_type = ""
        self.returns = "none"     # new | borrowed | none | null
        self.params = []          # [Param]
        self.container = None     # (param, note) for borrowed results / stolen items
        self.index = None         # param holding the index in the container
        self.steals = []          # [(param, always, note)]
        self.outs = []            # [(param, kind, when, container, note)]
        self.since = None         # "3.11" ...
        self.until = None
        self.limited = True
        self.limited_since = None # in the limited API only from this version
        self.via = None           # (target, note)
        self.skip = None          # reason
        self.rule = None          # the caller's rule, when the generic one would mislead
        self.notes = []           # reasons of the overrides that touched it

    def param(self, name, line=None):
        for p in self.params:
            if p.name == name:
                return p
        raise GenError("%s: %s has no parameter %r (has %s)" % (
            line or "overrides", self.name, name, ", ".join(p.name for p in self.params)))


def norm_type(t):
    """'PyObject*' -> 'PyObject *', 'const char *' stays, 'PyObject*const*' -> 'PyObject *const *'."""
    t = re.sub(r"\s*\*\s*", " *", t.strip())
    t = re.sub(r"\*\s*const\b", "*const", t)
    t = re.sub(r"\s+", " ", t).replace("* *", "**").strip()
    return t


def parse_refcounts(path):
    """{name: (ret_type, ret_effect, [Param])} from one refcounts.dat, in file order."""
    funcs = collections.OrderedDict()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in line.split(":", 4)]
            if len(parts) < 4:
                raise GenError("%s:%d: expected name:type:param:refcount:comment" % (path, lineno))
            parts += [""] * (5 - len(parts))
            name, typ, pname, effect, comment = parts
            if name not in funcs:
                funcs[name] = [norm_type(typ), effect, []]
                continue
            if not typ and " " in pname and not pname.startswith("void ("):
                typ, pname = pname.rsplit(" ", 1)   # 3.11 data: "Py_complex v" in the name slot
            pname = pname.lstrip("*")
            if any(p.name == pname for p in funcs[name][2]):
                continue                            # repeated rows (PyErr_NormalizeException)
            funcs[name][2].append(Param(norm_type(typ), pname, effect, comment))
    return funcs


def parse_prototype(text, line):
    """'int(PyObject *m, const char *name)' -> (ret_type, [Param])."""
    m = re.match(r"^\s*([\w\s\*]+?)\s*\((.*)\)\s*$", text)
    if not m:
        raise GenError("%s: bad prototype %r" % (line, text))
    params = []
    body = m.group(2).strip()
    if body and body != "void":
        for decl in body.split(","):
            if decl.strip() == "...":
                params.append(Param("", "...", "", ""))
                continue
            dm = re.match(r"^\s*(.*?)(\w+)\s*$", decl)
            if not dm:
                raise GenError("%s: bad parameter %r" % (line, decl))
            params.append(Param(norm_type(dm.group(1)), dm.group(2), "", ""))
    return norm_type(m.group(1)), params


OBJECT_RETURN = re.compile(r"^(PyObject|PyVarObject|PyTypeObject|PyCodeObject|PyFrameObject|TYPE) \*$")
VERSION = re.compile(r"^3\.(\d+)$")


def load(data_dir, overrides_path):
    apis = {}
    for tag, fname in DATA_FILES:
        path = os.path.join(data_dir, fname)
        for name, (ret_type, effect, params) in parse_refcounts(path).items():
            api = apis.setdefault(name, Api(name))
            api.versions.append(tag)
            if tag == "main" or not api.params:   # main's entry wins: it fixes 3.11 typos
                api.ret_type, api.params = ret_type, params
                api.returns = {"+1": "new", "0": "borrowed", "null": "null"}.get(effect, "none")
                if api.returns == "borrowed" and not OBJECT_RETURN.match(ret_type):
                    api.returns = "none"
    for api in apis.values():   # refcounts.dat's -1 entries are steals until overridden
        api.steals = [(p.name, True, "refcounts.dat: -1") for p in api.params if p.effect == "-1"]
    apply_overrides(apis, overrides_path)
    return apis


def apply_overrides(apis, path):
    with open(path, encoding="utf-8") as f:
        lines = [(n, l.rstrip("\n")) for n, l in enumerate(f, 1)]
    # "add" first: later directives may refer to the added names.
    ordered = sorted(lines, key=lambda nl: 0 if nl[1].startswith("add ") else 1)
    for lineno, line in ordered:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = "%s:%d" % (os.path.basename(path), lineno)
        if " : " not in line:
            raise GenError("%s: every directive needs ' : reason'" % where)
        body, reason = line.split(" : ", 1)
        words = body.split()
        directive, args = words[0], words[1:]
        if directive == "nonlimited":
            for name in args:
                api_of(apis, name, where).limited = False
            continue
        if not args:
            raise GenError("%s: %s needs a name" % (where, directive))
        name, rest = args[0], args[1:]
        if directive == "add":
            if name in apis:
                raise GenError("%s: %s is already in the reference data" % (where, name))
            api = apis[name] = Api(name)
            api.ret_type, api.params = parse_prototype(" ".join(rest), where)
            api.returns = "new" if OBJECT_RETURN.match(api.ret_type) else "none"
            api.notes.append(reason)
            continue
        api = api_of(apis, name, where)
        if directive != "skip":
            api.notes.append(reason)
        if directive == "steal":
            if len(rest) != 2 or rest[1] not in ("always", "success"):
                raise GenError("%s: steal NAME ARG always|success" % where)
            api.param(rest[0], where)
            api.steals = [s for s in api.steals if s[0] != rest[0]]
            api.steals.append((rest[0], rest[1] == "always", reason))
        elif directive == "notsteal":
            api.param(rest[0], where)
            api.steals = [s for s in api.steals if s[0] != rest[0]]
        elif directive == "container":
            api.container = (api.param(rest[0], where).name, reason)
            for opt in rest[1:]:
                key, _, value = opt.partition("=")
                if key != "index":
                    raise GenError("%s: unknown option %r" % (where, opt))
                api.index = api.param(value, where).name
        elif directive == "returns":
            if rest not in (["new"], ["borrowed"], ["none"], ["null"]):
                raise GenError("%s: returns NAME new|borrowed|none|null" % where)
            api.returns = rest[0]
        elif directive == "out":
            if len(rest) < 3 or rest[1] not in ("new", "borrowed") or \
                    rest[2] not in ("nonzero", "positive", "nonneg", "always"):
                raise GenError("%s: out NAME ARG new|borrowed WHEN [container=ARG]" % where)
            api.param(rest[0], where)
            container = None
            for opt in rest[3:]:
                key, _, value = opt.partition("=")
                if key != "container":
                    raise GenError("%s: unknown option %r" % (where, opt))
                container = api.param(value, where).name
            api.outs.append((rest[0], rest[1], rest[2], container, reason))
        elif directive in ("since", "until", "limited"):
            if len(rest) != 1 or not VERSION.match(rest[0]):
                raise GenError("%s: %s NAME 3.X" % (where, directive))
            setattr(api, "limited_since" if directive == "limited" else directive, rest[0])
        elif directive == "ptype":
            if len(rest) < 2:
                raise GenError("%s: ptype NAME ARG TYPE" % where)
            old = api.param(rest[0], where)
            api.params = [p._replace(type=norm_type(" ".join(rest[1:]))) if p is old else p
                          for p in api.params]
        elif directive == "via":
            api.via = (rest[0], reason)
        elif directive == "skip":
            api.skip = reason
        elif directive == "rule":
            if not rest:
                raise GenError("%s: rule NAME TEXT" % where)
            api.rule = " ".join(rest)
        else:
            raise GenError("%s: unknown directive %r" % (where, directive))


def api_of(apis, name, where):
    if name not in apis:
        raise GenError("%s: %s is not in the reference data (use 'add')" % (where, name))
    return apis[name]


# ---------------------------------------------------------------------------------------
# Wrapping decisions
# ---------------------------------------------------------------------------------------
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
    ("PyModule_Create2", ("PyModule_Create2TraceRefs", TRACE_REFS)),
    ("PyModule_FromDefAndSpec2", ("PyModule_FromDefAndSpec2TraceRefs", TRACE_REFS)),
])

# Argument parsers, wrapped by hand-written code (PRELUDE, PARSER_WRAPPERS below), with the
# prototypes the table shows for them (refcounts.dat lacks them).
PARSERS = {
    "PyArg_ParseTuple": "int(PyObject *args, const char *format, ...)",
    "PyArg_ParseTupleAndKeywords":
        "int(PyObject *args, PyObject *kw, const char *format, char **keywords, ...)",
    "PyArg_UnpackTuple":
        "int(PyObject *args, const char *name, Py_ssize_t min, Py_ssize_t max, ...)",
}


def vhex(v):
    m = VERSION.match(v)
    return "0x03%02X0000" % int(m.group(1))


def vtuple(v):
    return (3, int(VERSION.match(v).group(1)))


def decide(apis):
    """Fills api.recipe: 'macro', 'alloc', 'alias', 'parser', 'plain' or None, and
    api.unwrapped (why not) for names with reference semantics that are not wrapped."""
    for name, proto in PARSERS.items():
        if name not in apis:
            api = apis[name] = Api(name)
            api.ret_type, api.params = parse_prototype(proto, "gen_capi.py")
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


# ---------------------------------------------------------------------------------------
# Caller rules (table)
# ---------------------------------------------------------------------------------------
def rules(api):
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
    if api.steals:
        ops.append("STEAL")
    return tuple(ops)


# ---------------------------------------------------------------------------------------
# Header: hand-written prelude
# ---------------------------------------------------------------------------------------
PRELUDE = r'''
#include <stdarg.h>
#include <stdint.h>

/* AUX record kinds (record.site of an AUX record; docs/ring-format.md). */
#define PYREF_AUX_CONTAINER 1 /* obj = the container of the previous record's object;
                                 refcnt = its index there, -1 when the call names no index */

#define PYREF__CAT_(a, b) a##b
#define PYREF__CAT(a, b) PYREF__CAT_(a, b)
/* A local of one expansion: unique per use (__COUNTER__), so nested wrappers do not shadow. */
#define PYREF__V(v, n) PYREF__CAT(pyref__##v##_, n)
#ifdef __cplusplus
#define PYREF__AUTO auto
#else
#define PYREF__AUTO __auto_type
#endif

/* Records NEW or BORROW for a reference a call returned (nothing for NULL), then, when
 * `container` is not NULL, an AUX record naming it. `index` is the position in the
 * container, -1 when there is none. Cannot fail; does not touch the container. */
static inline __attribute__((always_inline)) void
pyref__origin(const void *obj, const struct pyref_site *site, unsigned op,
              const void *container, int64_t index)
{
    if (obj == NULL)
        return;
    PyObject *o = (PyObject *)(uintptr_t)obj;
    unsigned f = op | (pyref__is_immortal(o) ? (unsigned)PYREF_OP_IMMORTAL : 0u);
    int written = container != NULL /* both records in one write (ring.h) */
                      ? pyref_record_pair(o, site, (int64_t)Py_REFCNT(o), f, 0, container,
                                          PYREF_AUX_CONTAINER, index)
                      : pyref_record(o, site, (int64_t)Py_REFCNT(o), f, 0);
    if (written)
        pyref__after_record(o); /* pyref_hooks.h: a FREE is recorded if CPython frees it */
}

/* The count of a reference about to be stolen, read before the call: after it the
 * container may have released (freed) the object. */
struct pyref__pre {
    int64_t refcnt;  /* Py_REFCNT() before the call */
    unsigned flags;  /* PYREF_OP_IMMORTAL or 0 */
};

static inline __attribute__((always_inline)) struct pyref__pre pyref__before(const void *obj)
{
    struct pyref__pre p = {0, 0u};
    if (obj != NULL) {
        PyObject *o = (PyObject *)(uintptr_t)obj;
        p.refcnt = (int64_t)Py_REFCNT(o);
        p.flags = pyref__is_immortal(o) ? (unsigned)PYREF_OP_IMMORTAL : 0u;
        pyref__after_record(o); /* noted while alive: the taker may free it later */
    }
    return p;
}

/* Records STEAL of `obj` (count as read by pyref__before) and the container that took it.
 * Never dereferences obj: it may be gone. */
static inline __attribute__((always_inline)) void
pyref__stolen(const void *obj, struct pyref__pre pre, const struct pyref_site *site,
              const void *container, int64_t index)
{
    if (obj == NULL)
        return;
    if (container != NULL)
        pyref_record_pair(obj, site, pre.refcnt, PYREF_OP_STEAL | pre.flags, 0, container,
                          PYREF_AUX_CONTAINER, index);
    else
        pyref_record(obj, site, pre.refcnt, PYREF_OP_STEAL | pre.flags, 0);
}

/* Evaluates `call` once, records its result as NEW or BORROW, yields it unchanged (same
 * type, same value). */
#define PYREF__NEW(api, call) PYREF__ORIGIN_(api, call, PYREF_OP_NEW, __COUNTER__)
#define PYREF__BORROW(api, call) PYREF__ORIGIN_(api, call, PYREF_OP_BORROW, __COUNTER__)
#define PYREF__ORIGIN_(api, call, op, n)                                                   \
    __extension__({                                                                        \
        PYREF__AUTO PYREF__V(r, n) = (call);                                               \
        pyref__origin(PYREF__V(r, n), PYREF__SITE(api), op, NULL, 0);                      \
        PYREF__V(r, n);                                                                    \
    })

/* ---- PyArg_* outputs ------------------------------------------------------------------ */

/* One object output of a PyArg_Parse* format. */
struct pyref__argout {
    PyObject **out; /* the caller's variable */
    int arg;        /* top-level format unit: the argument's position (and kwlist index) */
    int pos;        /* position inside a "(...)" argument at depth 1; -1 at top level */
    int depth;      /* 0 top level, 1 inside "(...)", 2 deeper */
};
#define PYREF__ARGOUT_MAX 64

/*
 * Walks a PyArg_Parse* format (Doc: "Parsing arguments and building values") in step with
 * the caller's pointers and stores the PyObject ** outputs of "O", "O!", "S", "Y" and "U" in
 * outs (not "O&": its converter decides what it stores). Returns how many were stored (the
 * walk stops at `max`), or -1 at a format unit it does not know, in which case the caller
 * records nothing. Consumes *va. Reads each pointer as void * (the SysV x86-64 and AAPCS64
 * ABIs pass all data pointers alike) and the "O&" converter as a function pointer. Pure: no
 * Python API, no allocation; safe to call with any format that just parsed successfully.
 */
static inline int pyref__argfmt_outputs(const char *f, va_list *va, struct pyref__argout *outs,
                                        int max)
{
    int n = 0, arg = 0, depth = 0, pos = -1;
    for (;;) {
        char c = *f++;
        int ptrs = 1, obj = -1; /* pointers this unit takes; which one is the object */
        switch (c) {
        case '\0': case ':': case ';':
            return n;
        case '|': case '$':
            continue;
        case '(':
            if (++depth == 1)
                pos = 0;
            continue;
        case ')':
            if (--depth == 0) {
                arg++;
                pos = -1;
            } else if (depth == 1) {
                pos++;
            }
            continue;
        case 'b': case 'B': case 'h': case 'H': case 'i': case 'I': case 'l': case 'k':
        case 'L': case 'K': case 'n': case 'c': case 'C': case 'f': case 'd': case 'D':
        case 'p':
            break;
        case 's': case 'z': case 'y':
            if (*f == '*')
                f++;
            else if (*f == '#')
                f++, ptrs = 2;
            break;
        case 'u': case 'Z': /* 3.10, 3.11 */
            if (*f == '#')
                f++, ptrs = 2;
            break;
        case 'e': /* es, et, es#, et#: encoding, buffer[, length] */
            if (*f != 's' && *f != 't')
                return -1;
            f++, ptrs = 2;
            if (*f == '#')
                f++, ptrs = 3;
            break;
        case 'w':
            if (*f != '*')
                return -1;
            f++;
            break;
        case 'S': case 'Y': case 'U':
            obj = 0;
            break;
        case 'O':
            if (*f == '!')
                f++, ptrs = 2, obj = 1; /* type, then the output */
            else if (*f == '&')
                f++, ptrs = 0;          /* converter, then its argument: below */
            else
                obj = 0;
            break;
        default:
            return -1;
        }
        if (ptrs == 0) {
            (void)va_arg(*va, int (*)(PyObject *, void *));
            (void)va_arg(*va, void *);
        }
        for (int k = 0; k < ptrs; k++) {
            void *p = va_arg(*va, void *);
            if (k == obj) {
                if (n == max)
                    return n;
                outs[n].out = (PyObject **)p;
                outs[n].arg = arg;
                outs[n].pos = depth == 1 ? pos : -1;
                outs[n].depth = depth < 2 ? depth : 2;
                n++;
            }
        }
        if (depth == 0)
            arg++;
        else if (depth == 1)
            pos++;
    }
}

/* The value of keyword `name` in `kwargs` (a dict), or NULL. Compares keys as C strings
 * (PyUnicode_CompareWithASCIIString): runs no Python code and raises nothing. */
static inline PyObject *pyref__kwarg(PyObject *kwargs, const char *name)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    if (kwargs == NULL || name == NULL || *name == '\0')
        return NULL;
    while (PyDict_Next(kwargs, &pos, &key, &value))
        if (PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, name) == 0)
            return value;
    return NULL;
}

/* After a successful parse: BORROW for each object output, with the container it came
 * from: the args tuple (index = position), the kwargs dict (index -1), or for a unit inside
 * "(...)" the sequence passed for it (index = position at depth 1, else -1). Units the
 * call did not receive (optional, absent) are not recorded: their variable still holds the
 * caller's default. */
static inline void pyref__record_parsed(const struct pyref_site *site, PyObject *args,
                                        PyObject *kwargs, const char *const *kwlist,
                                        const char *format, va_list *va)
{
    struct pyref__argout outs[PYREF__ARGOUT_MAX];
    int n = pyref__argfmt_outputs(format, va, outs, PYREF__ARGOUT_MAX);
    Py_ssize_t nargs = PyTuple_Size(args);
    for (int k = 0; k < n; k++) {
        PyObject *obj = *outs[k].out, *item, *container;
        int64_t index;
        if (outs[k].arg < nargs) {
            item = PyTuple_GetItem(args, outs[k].arg);
            container = args;
            index = outs[k].arg;
        } else {
            item = kwlist ? pyref__kwarg(kwargs, kwlist[outs[k].arg]) : NULL;
            container = kwargs;
            index = -1;
        }
        if (item == NULL || obj == NULL)
            continue; /* not received: *out is the caller's default */
        if (outs[k].depth == 0) {
            if (obj == item)
                pyref__origin(obj, site, PYREF_OP_BORROW, container, index);
        } else {
            pyref__origin(obj, site, PYREF_OP_BORROW, item, outs[k].depth == 1 ? outs[k].pos : -1);
        }
    }
}

/* PyArg_ParseTupleAndKeywords' keyword list type, as the interpreter declares it. */
#if PY_VERSION_HEX >= 0x030D0000
#define PYREF__KWLIST PY_CXX_CONST char *const *
#else
#define PYREF__KWLIST char **
#endif

/* PyArg_ParseTuple through PyArg_VaParse (the same parser, vgetargs1): under
 * PY_SSIZE_T_CLEAN on 3.10-3.12 both names are the interpreter's _SizeT aliases, so the
 * flavour matches the caller's. Returns what the parser returns. */
static inline int pyref__parse_tuple(const struct pyref_site *site, PyObject *args,
                                     const char *format, ...)
{
    va_list va, walk;
    va_start(va, format);
    va_copy(walk, va);
    int ok = PyArg_VaParse(args, format, va);
    if (ok)
        pyref__record_parsed(site, args, NULL, NULL, format, &walk);
    va_end(walk);
    va_end(va);
    return ok;
}

static inline int pyref__parse_tuple_kw(const struct pyref_site *site, PyObject *args,
                                        PyObject *kw, const char *format,
                                        PYREF__KWLIST kwlist, ...)
{
    va_list va, walk;
    va_start(va, kwlist);
    va_copy(walk, va);
    int ok = PyArg_VaParseTupleAndKeywords(args, kw, format, kwlist, va);
    if (ok)
        pyref__record_parsed(site, args, kw, (const char *const *)kwlist, format, &walk);
    va_end(walk);
    va_end(va);
    return ok;
}

/* PyArg_UnpackTuple has no va_list form: the wrapper collects the caller's pointers in an
 * array (each argument evaluated once) and passes PYREF__UNPACK_MAX of them; the parser
 * reads only as many as the tuple has items (at most `max`). */
#define PYREF__UNPACK_MAX 32
static inline void pyref__unpack_copy(PyObject ***dst, void *const *src, size_t n)
{
    for (size_t i = 0; i < PYREF__UNPACK_MAX; i++)
        dst[i] = i < n ? (PyObject **)src[i + 1] : (PyObject **)NULL;
}

static inline void pyref__record_unpacked(const struct pyref_site *site, PyObject *args,
                                          PyObject ***outs, size_t n)
{
    Py_ssize_t nargs = PyTuple_Size(args);
    for (Py_ssize_t i = 0; i < nargs && (size_t)i < n; i++)
        if (outs[i] != NULL)
            pyref__origin(*outs[i], site, PYREF_OP_BORROW, args, i);
}
#define PYREF__SPREAD32(p)                                                                 \
    p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13],  \
        p[14], p[15], p[16], p[17], p[18], p[19], p[20], p[21], p[22], p[23], p[24], p[25], \
        p[26], p[27], p[28], p[29], p[30], p[31]
'''

PARSER_WRAPPERS = r'''
/* PyArg_ParseTuple, PyArg_ParseTupleAndKeywords: BORROW for each object output after a
 * successful parse. Under PY_SSIZE_T_CLEAN on 3.10-3.12 the names are aliases of the _SizeT
 * functions: the wrapper goes on the alias target. */
#if !defined(PyArg_ParseTuple)
#define PyArg_ParseTuple(...) pyref__parse_tuple(PYREF__SITE("PyArg_ParseTuple"), __VA_ARGS__)
#elif @SIZE_T_CLEAN@ && defined(PyArg_VaParse)
#define _PyArg_ParseTuple_SizeT(...)                                                       \
    pyref__parse_tuple(PYREF__SITE("PyArg_ParseTuple"), __VA_ARGS__)
#endif
#if !defined(PyArg_ParseTupleAndKeywords)
#define PyArg_ParseTupleAndKeywords(...)                                                   \
    pyref__parse_tuple_kw(PYREF__SITE("PyArg_ParseTupleAndKeywords"), __VA_ARGS__)
#elif @SIZE_T_CLEAN@ && \
    defined(PyArg_VaParseTupleAndKeywords)
#define _PyArg_ParseTupleAndKeywords_SizeT(...)                                            \
    pyref__parse_tuple_kw(PYREF__SITE("PyArg_ParseTupleAndKeywords"), __VA_ARGS__)
#endif

/* PyArg_UnpackTuple(args, name, min, max, &a, &b, ...): at most PYREF__UNPACK_MAX outputs
 * (more fail to compile: negative array size). */
#if !defined(PyArg_UnpackTuple)
#define PyArg_UnpackTuple(a0, a1, a2, a3, ...)                                             \
    pyref__w_PyArg_UnpackTuple(a0, a1, a2, a3, __COUNTER__, __VA_ARGS__)
#define pyref__w_PyArg_UnpackTuple(a0, a1, a2, a3, n, ...)                                 \
    __extension__({                                                                        \
        PyObject *PYREF__V(c, n) = (a0);                                                   \
        void *PYREF__V(v, n)[] = {NULL, __VA_ARGS__};                                      \
        PyObject **PYREF__V(p, n)[PYREF__UNPACK_MAX];                                      \
        (void)sizeof(char[sizeof PYREF__V(v, n) <= sizeof(void *) * (PYREF__UNPACK_MAX + 1)  \
                              ? 1 : -1]);                                                  \
        size_t PYREF__V(k, n) = sizeof PYREF__V(v, n) / sizeof(void *) - 1;                \
        pyref__unpack_copy(PYREF__V(p, n), PYREF__V(v, n), PYREF__V(k, n));                \
        int PYREF__V(r, n) = PyArg_UnpackTuple(PYREF__V(c, n), a1, a2, a3,                 \
                                               PYREF__SPREAD32(PYREF__V(p, n)));           \
        if (PYREF__V(r, n))                                                                \
            pyref__record_unpacked(PYREF__SITE("PyArg_UnpackTuple"), PYREF__V(c, n),       \
                                   PYREF__V(p, n), PYREF__V(k, n));                        \
        PYREF__V(r, n);                                                                    \
    })
#endif
'''.replace("@SIZE_T_CLEAN@", SIZE_T_CLEAN)

HEADER_TOP = r'''/*
 * pyref_capi.h — reference origins: the C-API calls a traced extension makes, recorded.
 *
 * GENERATED by c_helpers/gen_capi.py from CPython's Doc/data/refcounts.dat (3.11, main) and
 * c_helpers/capi_overrides.txt. Do not edit: change those and run
 *     python3 c_helpers/gen_capi.py
 *
 * USE
 *   Included by the Python.h shim (c_helpers/shim/Python.h), after the real Python.h and
 *   the shim's Py_INCREF/Py_DECREF. Nothing to do in the extension: each call below becomes
 *   a macro that performs the real call and records where the reference came from:
 *     NEW     a call returned a new reference (obj, count at return)          [op 4]
 *     BORROW  a call returned a borrowed reference; an AUX record (kind
 *             PYREF_AUX_CONTAINER) follows naming the container when the call
 *             names one (PyTuple_GetItem's tuple, PyDict_GetItem's dict, ...)   [op 5]
 *     STEAL   a call took the caller's reference (PyList_SetItem, PyTuple_SET_ITEM,
 *             PyModule_AddObject on success, ...); count read before the call,
 *             AUX names the container that took it                             [op 6]
 *   PyArg_ParseTuple, PyArg_ParseTupleAndKeywords and PyArg_UnpackTuple record BORROW for
 *   each "O", "O!", "S", "Y", "U" output after a successful parse, with the argument tuple
 *   (or keyword dict, or the sequence of a "(...)" unit) as container. Output arguments
 *   record the same way: PyDict_Next's key and value (BORROW, container the dict),
 *   PyErr_Fetch's, PyDict_GetItemRef's and the other *Ref calls' results (NEW). Nothing is
 *   recorded for a NULL result or a failed call (except steals that happen on failure too).
 *
 * SEMANTICS
 *   Each wrapper evaluates every argument exactly once and yields exactly what the real call
 *   yields (same type, same value; lvalue macros such as PyTuple_GET_ITEM stay lvalues).
 *   Functions are wrapped by a function-like macro of the same name that calls the function
 *   (a macro does not expand inside itself); taking the address (`tp_getattro =
 *   PyObject_GenericGetAttr`) or calling `(PyList_New)(n)` reaches the function unrecorded.
 *   A name that is a macro in the headers is only wrapped by a recipe written for it here
 *   (captured into a static inline function first); any other macro is left alone, so an
 *   unexpected header keeps its own semantics. Object-like aliases (Py_BuildValue ->
 *   _Py_BuildValue_SizeT under PY_SSIZE_T_CLEAN on 3.10-3.12, PyModule_Create2 ->
 *   PyModule_Create2TraceRefs under Py_TRACE_REFS) are wrapped on the alias target.
 *
 * Py_LIMITED_API
 *   APIs outside the limited API are not wrapped; the limited ones are, and the extension
 *   still calls only stable-ABI functions of Python (plus libpyref).
 *
 * REQUIREMENTS AND LIMITS
 *   GNU C (gcc, clang) or C++11 (g++, clang++): statement expressions, __auto_type/auto,
 *   __COUNTER__; before C++11 this file defines nothing. As for the shim's Py_INCREF, a wrapped call cannot appear where a
 *   statement expression cannot (file-scope initialisers in C++). A struct member named
 *   like a wrapped API and called as `s->PyList_New(...)` expands the wrapper; define
 *   PYREF_CAPI_OFF for such a file. PyArg_UnpackTuple takes at most 32 outputs.
 *
 * CONFIGURATION
 *   PYREF_CAPI_OFF defined before including Python.h: reference counts are recorded, C-API
 *   calls are not (this file defines nothing). PYREF_CAPI_ACTIVE is defined when it is on.
 */
#ifndef PYREF_CAPI_H
#define PYREF_CAPI_H
#if !defined(PYREF_CAPI_OFF) && (!defined(__cplusplus) || __cplusplus >= 201103L)
#define PYREF_CAPI_ACTIVE 1'''


# ---------------------------------------------------------------------------------------
# Header: per-API code
# ---------------------------------------------------------------------------------------
def pp_if(keyword, cond):
    """'#if cond', broken at ' && ' with backslashes when longer than a line."""
    text = "%s %s" % (keyword, cond)
    if len(text) <= LINE + 2:
        return text
    parts, lines = cond.split(" && "), []
    cur = keyword
    for k, p in enumerate(parts):
        piece = p + (" &&" if k < len(parts) - 1 else "")
        if len(cur) + 1 + len(piece) > LINE and cur != keyword:
            lines.append(cur + " \\")
            cur = "    " + piece
        else:
            cur += " " + piece
    lines.append(cur)
    return "\n".join(lines)


def guard(api, macro_test=None):
    """The preprocessor condition under which api is wrapped ('' = always)."""
    conds = []
    if macro_test:
        conds.append(macro_test)
    if api.since and vtuple(api.since) > OLDEST:
        conds.append("PY_VERSION_HEX >= %s" % vhex(api.since))
    if api.until:
        conds.append("PY_VERSION_HEX < %s" % vhex(api.until))
    if not api.limited:
        conds.append("!defined(Py_LIMITED_API)")
    elif api.limited_since:
        conds.append("(!defined(Py_LIMITED_API) || Py_LIMITED_API + 0 >= %s)"
                     % vhex(api.limited_since))
    return " && ".join(conds)


def split_params(decls):
    out = []
    for d in decls.split(","):
        m = re.match(r"^\s*(.*?)(\w+)\s*$", d)
        out.append((norm_type(m.group(1)), m.group(2)))
    return out


LINE = 94  # macro body width; the backslashes go in the next column


def wrap_c(line, width=LINE):
    """Splits one C statement at the top-level commas of its outermost call so that each
    piece fits `width`, continuation lines aligned after the opening parenthesis."""
    if len(line) <= width:
        return [line]
    open_at = line.find("(", len(line) - len(line.lstrip()))
    if " = " in line:
        open_at = line.find("(", line.find(" = "))
    if line.lstrip().startswith("#define"):
        open_at = line.find("(", line.find(")") + 1)
    if open_at < 0:
        return [line]
    args, depth, start = [], 0, open_at + 1
    for i in range(open_at, len(line)):
        c = line[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append(line[start:i].strip())
                tail = line[i:]
                break
        elif c == "," and depth == 1:
            args.append(line[start:i].strip())
            start = i + 1
    else:
        return [line]
    indent = open_at + 1 if open_at < width // 2 else len(line) - len(line.lstrip()) + 8
    out, cur = [], line[:open_at + 1]
    for k, a in enumerate(args):
        piece = a + ("," if k < len(args) - 1 else tail)
        if cur.endswith("(") or len(cur) + 1 + len(piece) <= width:
            cur += ("" if cur.endswith("(") else " ") + piece
        else:
            out.append(cur)
            cur = " " * indent + piece
    out.append(cur)
    return out


def cont(lines):
    """Joins macro body lines (wrapped to LINE columns) with aligned backslashes."""
    lines = [piece for l in lines for piece in wrap_c(l)]
    width = max([len(l) for l in lines[:-1]] + [LINE]) + 1
    return "\n".join(l.ljust(width) + "\\" for l in lines[:-1]) + "\n" + lines[-1]


def var(v):
    return "PYREF__V(%s, n)" % v


def bound_wrapper(api, ret, params, call_name, target, casts, slot=None):
    """A two-level macro binding the container, index, stolen and output arguments once.
    params: [(type, name)] of the real call; target: the macro name to define."""
    bind = {}
    container = api.container[0] if api.container else None
    for arg, _, _ in api.steals:
        bind[arg] = True
    for arg, _, _, c, _ in api.outs:
        bind[arg] = True
        if c:
            bind[c] = True
    if container:
        bind[container] = True
    if api.index:
        bind[api.index] = True
    names = ["a%d" % i for i in range(len(params))]
    pname = {p[1]: "b%d" % i for i, p in enumerate(params)}  # the bound local of each
    body = ["#define %s(%s) pyref__w_%s(%s, __COUNTER__)" % (
        target, ", ".join(names), target, ", ".join(names))]
    if len(body[0]) > LINE + 2:
        body = ["#define %s(%s) \\\n    pyref__w_%s(%s, __COUNTER__)" % (
            target, ", ".join(names), target, ", ".join(names))]
    lines = ["#define pyref__w_%s(%s, n)" % (target, ", ".join(names)), "    __extension__({"]
    args = []
    for i, (ptype, p) in enumerate(params):
        a = names[i]
        if p in bind:
            ctype = "PyObject *" if p in casts else ptype
            value = "_PyObject_CAST(%s)" % a if p in casts else "(%s)" % a
            lines.append("        %s%s%s = %s;" % (ctype, "" if ctype.endswith("*") else " ",
                                                    var("b%d" % i), value))
            args.append(var("b%d" % i))
        else:
            args.append("(%s)" % a)
    for arg, _, _ in api.steals:
        lines.append("        struct pyref__pre %s = pyref__before(%s);" % (
            var("pre_" + pname[arg]), var(pname[arg])))
    call = "%s(%s)" % (call_name, ", ".join(args))
    site = 'PYREF__SITE("%s")' % api.name
    cont_arg = var(pname[container]) if container else "NULL"
    index = var(pname[api.index]) if api.index else "-1"
    if slot:
        lines.append("        PyObject **%s = %s;" % (var("s"), call))
        lines.append("        pyref__origin(*%s, %s, PYREF_OP_BORROW, %s, %s);" % (
            var("s"), site, cont_arg, index))
        lines.append("        %s;" % var("s"))
        lines.append("    })")
        return body[0].replace("pyref__w_", "(*pyref__w_", 1).replace(
            "__COUNTER__)", "__COUNTER__))") + "\n" + cont(lines)
    void = ret == "void"
    if void:
        lines.append("        %s;" % call)
    else:
        lines.append("        PYREF__AUTO %s = %s;" % (var("r"), call))
    result = var("r")
    if api.returns in ("new", "borrowed"):
        op = "PYREF_OP_NEW" if api.returns == "new" else "PYREF_OP_BORROW"
        lines.append("        pyref__origin(%s, %s, %s, %s, %s);" % (
            result, site, op, cont_arg if api.returns == "borrowed" else "NULL",
            index if api.returns == "borrowed" else "0"))
    for arg, always, _ in api.steals:
        rec = "pyref__stolen(%s, %s, %s, %s, %s);" % (
            var(pname[arg]), var("pre_" + pname[arg]), site, cont_arg, index)
        if always:
            lines.append("        " + rec)
        else:
            ok = "%s == 0" % result if ret == "int" else "%s != NULL" % result
            lines.append("        if (%s)" % ok)
            lines.append("            " + rec)
    if api.outs:
        when = {"nonzero": "%s != 0", "positive": "%s > 0", "nonneg": "%s >= 0",
                "always": None}
        conds = set(o[2] for o in api.outs)
        assert len(conds) == 1, api.name
        w = when[conds.pop()]
        indent = "        "
        if w:
            lines.append("        if (%s) {" % (w % result))
            indent = "            "
        for arg, kind, _, c, _ in api.outs:
            p = var(pname[arg])
            op = "PYREF_OP_NEW" if kind == "new" else "PYREF_OP_BORROW"
            lines.append("%sif (%s != NULL)" % (indent, p))
            lines.append("%s    pyref__origin(*%s, %s, %s, %s, -1);" % (
                indent, p, site, op, var(pname[c]) if c else "NULL"))
        if w:
            lines.append("        }")
    lines.append("        %s;" % ("(void)0" if void else result))
    lines.append("    })")
    return body[0] + "\n" + cont(lines)


def plain_wrapper(api, target=None):
    """Wrapper of a function (or static inline function) that is not a macro."""
    target = target or api.name
    needs_binding = api.container and api.returns == "borrowed" or api.steals or api.outs
    if not needs_binding:
        helper = "PYREF__NEW" if api.returns == "new" else "PYREF__BORROW"
        text = "#define %s(...) %s(\"%s\", %s(__VA_ARGS__))" % (target, helper, api.name,
                                                                 target)
        return text if len(text) <= LINE + 2 else text.replace(") ", ") \\\n    ", 1)
    params = [(p.type, p.name) for p in api.params]
    if any(p[1] == "..." or not p[0] for p in params):
        raise GenError("%s: cannot bind the arguments of a variadic call" % api.name)
    return bound_wrapper(api, api.ret_type, params, target, target, casts=())


def macro_code(api):
    """(capture, wrapper) code for a MACROS recipe."""
    m = MACROS[api.name]
    params = split_params(m.params)
    decl = ", ".join("%s%s%s" % (t, "" if t.endswith("*") else " ", n) for t, n in params)
    args = ", ".join(n for _, n in params)
    casts = set(n for t, n in params if t == "PyObject *")
    cap, wrap = [], []
    for i, (cond, form) in enumerate(m.forms):
        pp = "#if" if i == 0 else "#elif" if cond else "#else"
        head = "%s %s" % (pp, cond) if cond else pp
        if len(m.forms) > 1:
            if form != "inline":
                cap.append(head)
            wrap.append(head)
        if form == "slot":
            cap.append("static inline PyObject **pyref__slot_%s(%s)\n{\n    return &%s(%s);\n}"
                       % (api.name, decl, api.name, args))
            wrap.append(bound_wrapper(api, "PyObject *", params, "pyref__slot_" + api.name,
                                      api.name, casts, slot=True))
        elif form == "value":
            ret = m.ret
            body = "return %s(%s);" % (api.name, args) if ret != "void" else \
                "%s(%s);" % (api.name, args)
            cap.append("static inline %s%spyref__orig_%s(%s)\n{\n    %s\n}" % (
                ret, "" if ret.endswith("*") else " ", api.name, decl, body))
            wrap.append(bound_wrapper(api, ret, params, "pyref__orig_" + api.name, api.name,
                                      casts))
        else:  # inline: call the static inline function itself (after #undef)
            wrap.append(bound_wrapper(api, m.ret, params, api.name, api.name, casts))
    if len(m.forms) > 1:
        cap.append("#endif")
        wrap.append("#endif")
    return "\n".join(cap), "\n".join(wrap)


def alloc_code(api):
    params = split_params(ALLOCS[api.name])
    decl = ", ".join("%s%s%s" % (t, "" if t.endswith("*") else " ", n) for t, n in params)
    args = ", ".join(n for _, n in params)
    cap = ("static inline PyObject *pyref__orig_%s(%s)\n{\n    return (PyObject *)%s(PyObject, "
           "%s);\n}" % (api.name, decl, api.name, args))
    wrap = "#define %s(type, %s) \\\n    ((type *)PYREF__NEW(\"%s\", pyref__orig_%s(%s)))" % (
        api.name, args, api.name, api.name, args)
    return cap, wrap


def header(apis):
    out = [HEADER_TOP, PRELUDE]
    wrapped = sorted((a for a in apis.values() if a.recipe), key=lambda a: a.name)

    # Captures: all before any redefinition, so each captures the interpreter's meaning.
    out.append("\n/* ---- Captures: the interpreter's macros, while they still mean it -------- */")
    for api in wrapped:
        if api.recipe == "macro":
            cap, _ = macro_code(api)
        elif api.recipe == "alloc":
            cap, _ = alloc_code(api)
        else:
            continue
        out.append("\n%s\n%s\n#endif" % (pp_if("#if", guard(api, "defined(%s)" % api.name)),
                                            cap))

    out.append("\n/* ---- Macros of the interpreter, redefined ---------------------------------- */")
    for api in wrapped:
        if api.recipe == "macro":
            _, wrap = macro_code(api)
        elif api.recipe == "alloc":
            _, wrap = alloc_code(api)
        else:
            continue
        out.append("\n/* %s: %s */\n%s\n#undef %s\n%s\n#endif" % (
            api.name, describe(api), pp_if("#if", guard(api, "defined(%s)" % api.name)),
            api.name, wrap))

    sections = (("NEW: calls returning a new reference", lambda a: a.returns == "new"
                 and not a.steals and not a.outs),
                ("BORROW: calls returning a borrowed reference", lambda a: a.returns ==
                 "borrowed" and not a.steals and not a.outs),
                ("STEAL: calls taking the caller's reference", lambda a: a.steals),
                ("Output arguments", lambda a: a.outs and not a.steals))
    for title, pick in sections:
        out.append("\n/* ---- %s %s */" % (title, "-" * max(3, 80 - len(title))))
        for api in wrapped:
            if api.recipe not in ("plain", "alias") or not pick(api):
                continue
            g = guard(api, "!defined(%s)" % api.name)
            code = plain_wrapper(api)
            if api.recipe == "alias":
                target, cond = ALIASES[api.name]
                alias_guard = guard(api, "defined(%s) && %s" % (api.name, cond))
                out.append("\n/* %s: %s */\n%s\n%s\n%s\n%s\n#endif" % (
                    api.name, describe(api), pp_if("#if", g), code,
                    pp_if("#elif", alias_guard), plain_wrapper(api, target)))
            else:
                note = ("/* %s: %s */\n" % (api.name, describe(api))
                        if api.container or api.steals or api.outs else "")
                out.append("\n%s%s\n%s\n#endif" % (note, pp_if("#if", g), code))

    out.append("\n/* ---- PyArg_*: borrowed outputs ------------------------------------------- */")
    out.append(PARSER_WRAPPERS)

    unwrapped = sorted((a for a in apis.values() if a.unwrapped), key=lambda a: a.name)
    out.append("/*\n * Not wrapped (`pyref explain` still knows their rules, from capi_table.py):")
    for api in unwrapped:
        out.append(" *   %s: %s" % (api.name, api.unwrapped)
                   if len(api.name) + len(api.unwrapped) < LINE - 7 else
                   " *   %s:\n *       %s" % (api.name, api.unwrapped))
    out.append(" */")
    out.append("\n#endif /* !PYREF_CAPI_OFF && (C || C++11) */\n#endif /* PYREF_CAPI_H */\n")
    return "\n".join(out)


def describe(api):
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


# ---------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------
TABLE_TOP = '''"""Reference semantics of the CPython C API, for `pyref explain`.

GENERATED by c_helpers/gen_capi.py from CPython's Doc/data/refcounts.dat (3.11, main) and
c_helpers/capi_overrides.txt. Do not edit: change those and run `python3 c_helpers/gen_capi.py`.

Pure data and accessors: no gdb. `get(name)` returns an `Api`:
  returns    "new" | "borrowed" | "none" | "null" (always NULL)
  container  for a borrowed result: the parameter naming the object that owns it (or None);
             for a steal: the object that takes the reference
  index      the parameter giving the position in the container (or None)
  steals     (Steal(arg, steals_on_failure), ...)
  outs       (Out(arg, returns, when, container), ...): references stored through arg;
             when: "nonzero" | "positive" | "nonneg" | "always" (result condition)
  versions   reference-data files listing it: "3.11", "main" (empty: added by the overrides)
  since, until  first version declaring it / first version without it (None: 3.10 / still there)
  limited    first version whose limited API has it ("3.10": every supported one), False
             when it is not in the limited API, None when not curated (unwrapped names)
  recorded   ring operations the shim writes for a call ("NEW", "BORROW", "STEAL"); empty
             when the call is not wrapped
  wrapper    how pyref_capi.h wraps it: "function" (a macro over the function), "macro"
             (the interpreter's macro, captured), "alias" (also on a PY_SSIZE_T_CLEAN /
             Py_TRACE_REFS alias target), "alloc" (PyObject_New & co.), "parser"
             (PyArg_*), or None
  via        a macro over this other API, which records it under its own name (or None)
  params     ((C type, name), ...) as the reference data gives them ("..." for varargs)
  rule       the caller's rule, one line
  notes      why the curated corrections say what they say
"""
import collections

Api = collections.namedtuple(
    "Api", "name returns container index steals outs versions since until limited recorded "
    "wrapper via params rule notes")
Steal = collections.namedtuple("Steal", "arg steals_on_failure")
Out = collections.namedtuple("Out", "arg returns when container")

# AUX record kinds written after BORROW and STEAL records (docs/ring-format.md).
AUX_CONTAINER = 1
AUX_KINDS = {AUX_CONTAINER: "container"}
'''

TABLE_BOTTOM = '''

def get(name):
    """The Api named `name`, or None."""
    row = _TABLE.get(name)
    if row is None:
        return None
    returns, container, index, steals, outs, versions, since, until, limited, recorded, \\
        wrapper, via, params, rule, notes = row
    return Api(name, returns, container, index, tuple(Steal(*s) for s in steals),
               tuple(Out(*o) for o in outs), versions, since, until, limited, recorded,
               wrapper, via, params, rule, notes)


def names():
    """All API names the table describes, sorted."""
    return sorted(_TABLE)


def rule(name):
    """The caller's rule for `name`, or None when the table does not know it."""
    row = _TABLE.get(name)
    return row[13] if row else None
'''


WRAPPERS = {"plain": "function", "macro": "macro", "alias": "alias", "alloc": "alloc",
            "parser": "parser"}


def table(apis):
    out = [TABLE_TOP, "_TABLE = {"]
    for name in sorted(apis):
        api = apis[name]
        container = api.container[0] if api.container else None
        if container is None:
            outs_c = [o[3] for o in api.outs if o[3]]
            container = outs_c[0] if outs_c else None
        row = (api.returns, container, api.index,
               tuple((a, always) for a, always, _ in api.steals),
               tuple((a, k, w, c) for a, k, w, c, _ in api.outs),
               tuple(api.versions), api.since if api.since and vtuple(api.since) > OLDEST
               else None, api.until,
               None if not api.recipe else (api.limited_since or "3.10") if api.limited
               else False, recorded_as(api),
               WRAPPERS.get(api.recipe), api.via[0] if api.via else None,
               tuple((p.type, p.name) for p in api.params), rules(api), tuple(api.notes))
        out.append("    %r: %r," % (name, row))
    out.append("}")
    out.append(TABLE_BOTTOM)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------
def generate(data_dir, overrides_path):
    apis = load(data_dir, overrides_path)
    decide(apis)
    return header(apis), table(apis), apis


def write(path, text):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA,
                    help="directory with refcounts-3.11.dat and refcounts-main.dat "
                         "(default: %(default)s)")
    ap.add_argument("--overrides", default=DEFAULT_OVERRIDES)
    ap.add_argument("--header", default=DEFAULT_HEADER)
    ap.add_argument("--table", default=DEFAULT_TABLE)
    ap.add_argument("--list", action="store_true",
                    help="print each wrapped API and its recipe instead of writing files")
    opts = ap.parse_args(argv)
    try:
        hdr, tbl, apis = generate(opts.data, opts.overrides)
    except (GenError, OSError) as e:
        print("gen_capi: %s" % e, file=sys.stderr)
        return 1
    if opts.list:
        for name in sorted(apis):
            a = apis[name]
            if a.recipe:
                print("%-40s %-6s %-8s %s" % (name, a.recipe, guard(a) or "-", describe(a)))
        return 0
    write(opts.header, hdr)
    write(opts.table, tbl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
