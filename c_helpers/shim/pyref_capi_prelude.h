/*
 * pyref_capi_prelude.h — reference origins: the C-API calls a traced extension makes,
 * recorded. The hand-written half: what the wrappers promise, the helpers they call and
 * the PyArg_* parser wrappers. The per-API wrappers are generated into pyref_capi.h
 * (c_helpers/capi/gen_capi.py), which includes this file first.
 *
 * USE
 *   Included through pyref_capi.h by the Python.h shim (c_helpers/shim/Python.h), after the
 *   real Python.h and the shim's Py_INCREF/Py_DECREF. Nothing to do in the extension: each
 *   wrapped call becomes a macro that performs the real call and records where the
 *   reference came from:
 *     NEW     a call returned a new reference (obj, count at return)          [op 4]
 *     BORROW  a call returned a borrowed reference; the record names the
 *             container when the call names one (PyTuple_GetItem's tuple,
 *             PyDict_GetItem's dict, ...) and the index in it                  [op 5]
 *     STEAL   a call took the caller's reference (PyList_SetItem, PyTuple_SET_ITEM,
 *             PyModule_AddObject on success, ...); count read before the call,
 *             the record names the container that took it                      [op 6]
 *   (format 2, ring.h "origin word": count, container and index in the one record; an
 *   AUX ORIGIN follows only when they do not fit it.)
 *   Py_BuildValue and Py_VaBuildValue record STEAL for each "N" argument (the container is
 *   the result holding it; "O" is INCREF'd by the call, the caller keeps its reference: no
 *   record), then NEW for the result.
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
 *   A name that is a macro in the headers is only wrapped by a recipe written for it
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
 *   __COUNTER__; before C++11 no wrapper is defined. As for the shim's Py_INCREF, a wrapped
 *   call cannot appear where a statement expression cannot (file-scope initialisers in
 *   C++). A struct member named like a wrapped API and called as `s->PyList_New(...)`
 *   expands the wrapper; define PYREF_CAPI_OFF for such a file. PyArg_UnpackTuple takes at
 *   most 32 outputs.
 *
 * CONFIGURATION
 *   PYREF_CAPI_OFF defined before including Python.h: reference counts are recorded, C-API
 *   calls are not (no wrapper is defined). PYREF_CAPI_ACTIVE is defined when it is on.
 *   PYREF_ITEM_ORIGINS_OFF (opt-in): PyTuple_GET_ITEM, PyList_GET_ITEM, PyTuple_SET_ITEM
 *   and PyList_SET_ITEM are left as the interpreter defines them: fewer records in code
 *   that walks containers (bench/RESULTS.md), but a borrowed item's origin is not recorded
 *   (its history starts at its first INCREF), a reference given to a tuple or list by
 *   *_SET_ITEM is not seen leaving, and an item traced code never INCREFs is not noted
 *   for FREE capture.
 *
 * Tested by tests/system/test_capi_origins.py (records from real cores, the wrappers'
 * semantics, a -Wall -Wextra -Werror compile matrix, the PyArg_* and Py_BuildValue format
 * walkers).
 */
#ifndef PYREF_CAPI_PRELUDE_H
#define PYREF_CAPI_PRELUDE_H
#if !defined(PYREF_CAPI_OFF) && (!defined(__cplusplus) || __cplusplus >= 201103L)
#define PYREF_CAPI_ACTIVE 1
#include <stdarg.h>
#include <stdint.h>

/* AUX record kinds (record.site of an AUX record; docs/ring-format.md). */
#define PYREF_AUX_CONTAINER 1 /* obj = the container of the previous record's object;
                                 refcnt = its index there, -1 when the call names no index;
                                 format 2: only for a container the origin word cannot hold */

/* The generated captures of the interpreter's macros (pyref_capi.h: pyref__slot_*,
 * pyref__orig_*): always inlined, so that at -O0 a wrapped PyTuple_GET_ITEM costs what the
 * interpreter's macro costs there, not one more call. */
#define PYREF__CAPTURE __attribute__((always_inline))

#define PYREF__CAT_(a, b) a##b
#define PYREF__CAT(a, b) PYREF__CAT_(a, b)
/* A local of one expansion: unique per use (__COUNTER__), so nested wrappers do not shadow. */
#define PYREF__V(v, n) PYREF__CAT(pyref__##v##_, n)
#ifdef __cplusplus
#define PYREF__AUTO auto
#else
#define PYREF__AUTO __auto_type
#endif

/* The records of an origin whose count or index does not fit an origin code, or whose
 * container does not fit the origin word (ring.h): the origin with code 0, the AUX ORIGIN
 * with the count and index in the same sequence, then, for such a container, an AUX
 * CONTAINER naming it. Out of line: rare (an immortal object, a count or index past the
 * code's reach). Returns 1 when the origin was written. */
static __attribute__((noinline, cold, unused)) int
pyref__origin_full(const void *obj, const struct pyref_site *site, unsigned f, int64_t count,
                   const void *container, int64_t index)
{
    uint64_t c = (uint64_t)(uintptr_t)container;
    int fits = (c & ~PYREF_ORIGIN_PTR_MASK) == 0;
    int written = pyref_record_pair(obj, site, (int64_t)(fits ? c : 0), f, 0,
                                    (const void *)(uintptr_t)index, PYREF_AUX_ORIGIN, count);
    if (written && !fits)
        pyref_record_aux(container, PYREF_AUX_CONTAINER, index);
    return written;
}

/* Writes a BORROW or STEAL (`f`: op and flags) of `obj` with its count, container and
 * index as format 2 lays them out (ring.h, "origin word"): one record when they fit, the
 * usual case, else pyref__origin_full(). Through the pyref__record_idle() writer when
 * `idle` (the caller read t->busy as 0), else pyref_record(). Returns 1 when written. */
static inline __attribute__((always_inline)) int
pyref__origin_write(const void *obj, const struct pyref_site *site, unsigned f, int64_t count,
                    const void *container, int64_t index, struct pyref_thread *t, int idle)
{
    uint64_t c = (uint64_t)(uintptr_t)container;
    uint32_t code = (c & ~PYREF_ORIGIN_PTR_MASK) == 0 ? pyref_origin_code(count, index) : 0;
    if (__builtin_expect(code == 0, 0))
        return pyref__origin_full(obj, site, f, count, container, index);
    int64_t w = (int64_t)pyref_origin_word(c, code);
    int d = (int)(int8_t)(uint8_t)(code & 0xFF); /* the delta byte holds the code's low bits */
    return idle ? pyref__record_idle(t, obj, site, w, f, d) : pyref_record(obj, site, w, f, d);
}

/* The body of pyref__origin() on the calling thread's descriptor `t`: through the
 * pyref__record*_idle() writers when `idle` (the caller read t->busy as 0), else through
 * pyref_record*(), which handle every state of the thread. A NEW is one record (count in
 * `refcnt`); a BORROW carries its container (pyref__origin_write). */
static inline __attribute__((always_inline)) void
pyref__origin_on(const void *obj, const struct pyref_site *site, unsigned op,
                 const void *container, int64_t index, struct pyref_thread *t, int idle)
{
    if (obj == NULL)
        return;
    PyObject *o = (PyObject *)(uintptr_t)obj;
    unsigned f = op | (pyref__is_immortal(o) ? (unsigned)PYREF_OP_IMMORTAL : 0u);
    Py_ssize_t count = pyref__refcnt(o); /* Py_REFCNT(), without its call at -O0 */
    int written;
    if (op != PYREF_OP_NEW)
        written = pyref__origin_write(o, site, f, (int64_t)count, container, index, t, idle);
    else if (container == NULL) /* every NEW the wrappers record */
        written = idle ? pyref__record_idle(t, o, site, (int64_t)count, f, 0)
                       : pyref_record(o, site, (int64_t)count, f, 0);
    else /* a NEW naming a container: an AUX CONTAINER after it, as in format 1 */
        written = pyref_record_pair(o, site, (int64_t)count, f, 0, container,
                                    PYREF_AUX_CONTAINER, index);
    if (written)
        pyref__after_record(o, count); /* pyref_hooks.h: a FREE is recorded if CPython frees it */
}

/* pyref__origin() when the thread is busy and recording is on: out of line, rare. */
static __attribute__((noinline, cold, unused)) void
pyref__origin_busy(const void *obj, const struct pyref_site *site, unsigned op,
                   const void *container, int64_t index)
{
    pyref__origin_on(obj, site, op, container, index, NULL, 0);
}

/* Records NEW or BORROW for a reference a call returned (nothing for NULL), naming
 * `container` when it is not NULL (a BORROW in the same record, format 2). `index` is the
 * position in the container, -1 when there is none. Cannot fail; does not touch the
 * container. The thread's `busy` word is tested first: under PYREF=off nothing else is
 * done. */
static inline __attribute__((always_inline)) void
pyref__origin(const void *obj, const struct pyref_site *site, unsigned op,
              const void *container, int64_t index)
{
    struct pyref_thread *t = pyref__thread(); /* Python.h */
    if (__builtin_expect(t->busy != 0, 0)) {
        if (!pyref__busy_off(t->busy))
            pyref__origin_busy(obj, site, op, container, index);
        return;
    }
    pyref__origin_on(obj, site, op, container, index, t, 1);
}

/* The count of a reference about to be stolen, read before the call: after it the
 * container may have released (freed) the object. It also carries what pyref__before()
 * found of the thread, so that pyref__stolen() does not test `busy` again: one test of
 * the thread for the pair (when off, the compiler folds the second into the first). */
#ifndef PYREF__O0_COPIES
#define PYREF__PRE_KEEPS_T 1
#else
/* -O0 (Python.h's optimize("O2") copies): 16 bytes, which the unoptimised wrappers get and
 * pass in two registers (24 went through memory: +2.8M instructions, 2.4 %, on the
 * workload); pyref__stolen() reads the descriptor again there. */
#define PYREF__PRE_KEEPS_T 0
#endif
struct pyref__pre {
    int64_t refcnt;         /* Py_REFCNT() before the call */
    unsigned flags;         /* PYREF_OP_IMMORTAL or 0; PYREF__PRE_OFF: recording is off */
#if PYREF__PRE_KEEPS_T
    struct pyref_thread *t; /* the descriptor pyref__before() read idle, else NULL */
#endif
};
#define PYREF__PRE_OFF 0x100u /* not an op bit: never reaches a record */

/* Reads what pyref__stolen() records of `obj` before the call that steals it, and notes
 * obj for the free hook while it is alive. Under PYREF=off does nothing else and returns
 * PYREF__PRE_OFF (pyref__stolen() then records nothing). A thread whose `busy` is 0 here
 * is still idle at the pyref__stolen() after the call: a record made during the call (a
 * signal handler, a deallocator's traced code) restores `busy` to 0 before it returns, a
 * registered thread keeps its descriptor until it exits, and a fork child keeps the
 * forking thread's (ring.c) - the precondition of pyref__record_idle(). */
static inline __attribute__((always_inline)) struct pyref__pre pyref__before(const void *obj)
{
#if PYREF__PRE_KEEPS_T
    struct pyref_thread *t = pyref__thread(); /* Python.h */
    struct pyref__pre p = {0, 0u, t};
    uint32_t busy = t->busy;
    if (__builtin_expect(busy != 0, 0)) { /* the shim's one test, as in pyref_incref() */
        p.t = NULL;
        if (pyref__busy_off(busy)) {
            p.flags = PYREF__PRE_OFF;
            return p;
        }
    }
#else
    struct pyref__pre p = {0, 0u};
    if (pyref_recording_off())
        return p;
#endif
    if (obj != NULL) {
        PyObject *o = (PyObject *)(uintptr_t)obj;
        p.refcnt = (int64_t)pyref__refcnt(o);
        p.flags = pyref__is_immortal(o) ? (unsigned)PYREF_OP_IMMORTAL : 0u;
        pyref__after_record(o, (Py_ssize_t)p.refcnt); /* noted while alive: the taker may free it */
    }
    return p;
}

/* The body of pyref__stolen() on `t`, as pyref__origin_on(). */
static inline __attribute__((always_inline)) void
pyref__stolen_on(const void *obj, struct pyref__pre pre, const struct pyref_site *site,
                 const void *container, int64_t index, struct pyref_thread *t, int idle)
{
    if (obj == NULL)
        return;
    (void)pyref__origin_write(obj, site, PYREF_OP_STEAL | pre.flags, pre.refcnt, container,
                              index, t, idle);
}

/* pyref__stolen() when the thread was busy at pyref__before() (no descriptor yet, or a
 * signal handler inside a record) and recording is on: out of line, rare. */
static __attribute__((noinline, cold, unused)) void
pyref__stolen_busy(const void *obj, struct pyref__pre pre, const struct pyref_site *site,
                   const void *container, int64_t index)
{
    pyref__stolen_on(obj, pre, site, container, index, NULL, 0);
}

/* Records STEAL of `obj` (count as read by pyref__before) and the container that took it
 * (format 2: in the same record).
 * Never dereferences obj: it may be gone. No `busy` test (but at -O0): pyref__before()'s
 * stands. */
static inline __attribute__((always_inline)) void
pyref__stolen(const void *obj, struct pyref__pre pre, const struct pyref_site *site,
              const void *container, int64_t index)
{
#if PYREF__PRE_KEEPS_T
    if (__builtin_expect(pre.flags & PYREF__PRE_OFF, 0))
        return;
    if (__builtin_expect(pre.t == NULL, 0)) {
        if (obj != NULL)
            pyref__stolen_busy(obj, pre, site, container, index);
        return;
    }
    pyref__stolen_on(obj, pre, site, container, index, pre.t, 1);
#else /* -O0: the busy test again, as in pyref__origin() */
    struct pyref_thread *t = pyref__thread();
    if (__builtin_expect(t->busy != 0, 0)) {
        if (!pyref__busy_off(t->busy))
            pyref__stolen_busy(obj, pre, site, container, index);
        return;
    }
    pyref__stolen_on(obj, pre, site, container, index, t, 1);
#endif
}

/* Unoptimised builds (gcc -O0, Python.h's PYREF__O2_FN): the three helpers every wrapper
 * calls become calls of one optimize("O2") copy each per translation unit, into which
 * the record is inlined, instead of being inlined unoptimised at every call site (the
 * wrappers' own statement expressions stay the caller's). */
#ifdef PYREF__O0_COPIES
PYREF__O2_FN void pyref__origin_o2(const void *obj, const struct pyref_site *site, unsigned op,
                                   const void *container, int64_t index)
{
    pyref__origin(obj, site, op, container, index);
}
PYREF__O2_FN struct pyref__pre pyref__before_o2(const void *obj)
{
    return pyref__before(obj);
}
PYREF__O2_FN void pyref__stolen_o2(const void *obj, struct pyref__pre pre,
                                   const struct pyref_site *site, const void *container,
                                   int64_t index)
{
    pyref__stolen(obj, pre, site, container, index);
}
#define pyref__origin pyref__origin_o2
#define pyref__before pyref__before_o2
#define pyref__stolen pyref__stolen_o2
#endif

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
static inline PYREF__O0_OPT int pyref__argfmt_outputs(const char *f, va_list *va, struct pyref__argout *outs,
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
static inline PYREF__O0_OPT PyObject *pyref__kwarg(PyObject *kwargs, const char *name)
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
static inline PYREF__O0_OPT void pyref__record_parsed(const struct pyref_site *site, PyObject *args,
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
static inline PYREF__O0_OPT int pyref__parse_tuple(const struct pyref_site *site, PyObject *args,
                                     const char *format, ...)
{
    va_list va, walk;
    va_start(va, format);
    va_copy(walk, va);
    int ok = PyArg_VaParse(args, format, va);
    if (ok && !pyref_recording_off())
        pyref__record_parsed(site, args, NULL, NULL, format, &walk);
    va_end(walk);
    va_end(va);
    return ok;
}

static inline PYREF__O0_OPT int pyref__parse_tuple_kw(const struct pyref_site *site, PyObject *args,
                                        PyObject *kw, const char *format,
                                        PYREF__KWLIST kwlist, ...)
{
    va_list va, walk;
    va_start(va, kwlist);
    va_copy(walk, va);
    int ok = PyArg_VaParseTupleAndKeywords(args, kw, format, kwlist, va);
    if (ok && !pyref_recording_off())
        pyref__record_parsed(site, args, kw, (const char *const *)kwlist, format, &walk);
    va_end(walk);
    va_end(va);
    return ok;
}

/* PyArg_UnpackTuple has no va_list form: the wrapper collects the caller's pointers in an
 * array (each argument evaluated once) and passes PYREF__UNPACK_MAX of them; the parser
 * reads only as many as the tuple has items (at most `max`). */
#define PYREF__UNPACK_MAX 32
static inline PYREF__O0_OPT void pyref__unpack_copy(PyObject ***dst, void *const *src, size_t n)
{
    for (size_t i = 0; i < PYREF__UNPACK_MAX; i++)
        dst[i] = i < n ? (PyObject **)src[i + 1] : (PyObject **)NULL;
}

static inline PYREF__O0_OPT void pyref__record_unpacked(const struct pyref_site *site, PyObject *args,
                                          PyObject ***outs, size_t n)
{
    if (pyref_recording_off())
        return;
    Py_ssize_t nargs = PyTuple_Size(args);
    for (Py_ssize_t i = 0; i < nargs && (size_t)i < n; i++)
        if (outs[i] != NULL)
            pyref__origin(*outs[i], site, PYREF_OP_BORROW, args, i);
}
#define PYREF__SPREAD32(p)                                                                 \
    p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13],  \
        p[14], p[15], p[16], p[17], p[18], p[19], p[20], p[21], p[22], p[23], p[24], p[25], \
        p[26], p[27], p[28], p[29], p[30], p[31]

/* ---- PyArg_*: borrowed outputs ------------------------------------------- */

/* PyArg_ParseTuple, PyArg_ParseTupleAndKeywords: BORROW for each object output after a
 * successful parse. Under PY_SSIZE_T_CLEAN on 3.10-3.12 the names are aliases of the _SizeT
 * functions: the wrapper goes on the alias target. */
#if !defined(PyArg_ParseTuple)
#define PyArg_ParseTuple(...) pyref__parse_tuple(PYREF__SITE("PyArg_ParseTuple"), __VA_ARGS__)
#elif defined(PYREF__SIZE_T_ALIASES) && defined(PyArg_VaParse)
#define _PyArg_ParseTuple_SizeT(...)                                                       \
    pyref__parse_tuple(PYREF__SITE("PyArg_ParseTuple"), __VA_ARGS__)
#endif
#if !defined(PyArg_ParseTupleAndKeywords)
#define PyArg_ParseTupleAndKeywords(...)                                                   \
    pyref__parse_tuple_kw(PYREF__SITE("PyArg_ParseTupleAndKeywords"), __VA_ARGS__)
#elif defined(PYREF__SIZE_T_ALIASES) && defined(PyArg_VaParseTupleAndKeywords)
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

/* ---- Py_BuildValue, Py_VaBuildValue: "N" steals ------------------------------------- */

/* One "N" argument of a Py_BuildValue format. */
struct pyref__buildarg {
    PyObject *obj;   /* the argument */
    int depth;       /* 0 top level, 1 inside a top-level (...), [...] or {...}, 2 deeper */
    int top;         /* the top-level unit it is, or is inside */
    int pos;         /* its position inside a top-level "(...)" or "[...]" (depth 1), else -1 */
};
#define PYREF__BUILD_MAX 32

/*
 * Walks a Py_BuildValue format (Doc: "Parsing arguments and building values") in step
 * with the caller's arguments and stores each "N" argument in outs (the walk stops storing
 * at `max`); *ntop receives the number of top-level units (1: the result is that unit's
 * value; more: a tuple of them). Returns how many "N" were stored, or -1 at a format unit
 * it does not know, in which case the caller records nothing. Consumes *va, reading each
 * argument with its promoted C type ("#" lengths: Py_ssize_t where the interpreter reads
 * one). Pure: no Python API, no allocation.
 */
static inline PYREF__O0_OPT int pyref__buildfmt_stolen(const char *f, va_list *va, struct pyref__buildarg *outs,
                                         int max, int *ntop)
{
    int n = 0, depth = 0, top = 0, pos = -1;
    char open1 = 0; /* the bracket of the top-level unit being walked */
    *ntop = 0;
    for (;;) {
        char c = *f++;
        switch (c) {
        case '\0':
            *ntop = top;
            return depth == 0 ? n : -1;
        case ' ': case '\t': case ',': case ':':
            continue;
        case '(': case '[': case '{':
            if (depth == 1 && pos >= 0)
                pos++;
            if (++depth == 1) {
                open1 = c;
                pos = c == '{' ? -1 : 0;
            }
            continue;
        case ')': case ']': case '}':
            if (depth == 0)
                return -1;
            if (--depth == 0) {
                top++;
                pos = -1;
            }
            continue;
        case 'b': case 'B': case 'h': case 'H': case 'i': case 'I': case 'c': case 'C':
        case 'p':
            (void)va_arg(*va, int);
            break;
        case 'l': case 'k':
            (void)va_arg(*va, long);
            break;
        case 'L': case 'K':
            (void)va_arg(*va, long long);
            break;
        case 'n':
            (void)va_arg(*va, Py_ssize_t);
            break;
        case 'f': case 'd':
            (void)va_arg(*va, double);
            break;
        case 'D': case 'S':
            (void)va_arg(*va, void *);
            break;
        case 's': case 'z': case 'y': case 'u': case 'U': case 'Z':
            (void)va_arg(*va, void *);
            if (*f == '#') {
                f++;
#if PY_VERSION_HEX >= 0x030D0000 || defined(PY_SSIZE_T_CLEAN)
                (void)va_arg(*va, Py_ssize_t);
#else
                (void)va_arg(*va, int);
#endif
            }
            break;
        case 'O':
            if (*f == '&') {
                f++;
                (void)va_arg(*va, PyObject *(*)(void *));
                (void)va_arg(*va, void *);
            } else {
                (void)va_arg(*va, PyObject *);
            }
            break;
        case 'N': {
            PyObject *o = va_arg(*va, PyObject *);
            if (n < max) {
                outs[n].obj = o;
                outs[n].depth = depth < 2 ? depth : 2;
                outs[n].top = top;
                outs[n].pos = depth == 1 && open1 != '{' ? pos : -1;
                n++;
            }
            break;
        }
        default:
            return -1;
        }
        if (depth == 0)
            top++;
        else if (depth == 1 && pos >= 0)
            pos++;
    }
}

/* Py_VaBuildValue through the interpreter's own function, recording STEAL for each "N"
 * argument (count read before the call; the container is the result that holds it, with
 * its index when the result is the tuple or list it sits in directly; none when the
 * result is the argument itself, or the call failed: "N" is stolen even then), then NEW
 * for the result. Returns what the interpreter returns. */
static inline PYREF__O0_OPT PyObject *pyref__vbuild_value(const struct pyref_site *site, const char *format,
                                            va_list va)
{
    struct pyref__buildarg args[PYREF__BUILD_MAX];
    struct pyref__pre pre[PYREF__BUILD_MAX];
    int ntop = 0, n = -1;
    if (format != NULL && !pyref_recording_off()) { /* off: n = -1, nothing recorded */
        va_list walk;
        va_copy(walk, va);
        n = pyref__buildfmt_stolen(format, &walk, args, PYREF__BUILD_MAX, &ntop);
        va_end(walk);
    }
    for (int k = 0; k < n; k++)
        pre[k] = pyref__before(args[k].obj);
    /* the parentheses reach the function (or its PY_SSIZE_T_CLEAN alias), not a wrapper */
    PyObject *r = (Py_VaBuildValue)(format, va);
    for (int k = 0; k < n; k++) {
        const struct pyref__buildarg *a = &args[k];
        const void *container = NULL;
        int64_t index = -1;
        if (r != NULL && ntop > 1) {           /* a tuple of the top-level units */
            container = r;
            index = a->depth == 0 ? a->top : -1;
        } else if (r != NULL && a->depth > 0) { /* inside the one top-level unit */
            container = r;
            index = a->depth == 1 ? a->pos : -1;
        }
        pyref__stolen(a->obj, pre[k], site, container, index);
    }
    pyref__origin(r, site, PYREF_OP_NEW, NULL, 0);
    return r;
}

static inline PYREF__O0_OPT PyObject *pyref__build_value(const struct pyref_site *site, const char *format,
                                           ...)
{
    va_list va;
    va_start(va, format);
    PyObject *r = pyref__vbuild_value(site, format, va);
    va_end(va);
    return r;
}

/* Py_BuildValue, Py_VaBuildValue: under PY_SSIZE_T_CLEAN on 3.10-3.12 both names are the
 * interpreter's _SizeT aliases: the wrapper goes on the alias target, as for PyArg_*. */
#if !defined(Py_BuildValue)
#define Py_BuildValue(...) pyref__build_value(PYREF__SITE("Py_BuildValue"), __VA_ARGS__)
#elif defined(PYREF__SIZE_T_ALIASES)
#define _Py_BuildValue_SizeT(...) pyref__build_value(PYREF__SITE("Py_BuildValue"), __VA_ARGS__)
#endif
#if !defined(Py_VaBuildValue)
#define Py_VaBuildValue(format, va)                                                        \
    pyref__vbuild_value(PYREF__SITE("Py_VaBuildValue"), format, va)
#elif defined(PYREF__SIZE_T_ALIASES)
#define _Py_VaBuildValue_SizeT(format, va)                                                 \
    pyref__vbuild_value(PYREF__SITE("Py_VaBuildValue"), format, va)
#endif

#endif /* !PYREF_CAPI_OFF && (C || C++11) */
#endif /* PYREF_CAPI_PRELUDE_H */
