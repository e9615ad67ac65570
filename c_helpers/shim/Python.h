/*
 * pyref Python.h shim — records every reference-count transition an extension makes.
 *
 * USE
 *   Build the extension unchanged with the flags of `pyref-config`:
 *       gcc $(pyref-config --python python3 --cflags) -shared -fPIC ext.c \
 *           $(pyref-config --libs) -o ext.so
 *   `--cflags` puts this directory first on the include path, so the extension's
 *   `#include <Python.h>` lands here; this file includes the real Python.h
 *   (#include_next) and then redefines
 *       Py_INCREF Py_DECREF Py_XINCREF Py_XDECREF Py_NewRef Py_XNewRef
 *   as recording versions. Py_CLEAR, Py_SETREF, Py_XSETREF and Py_RETURN_NONE & co. are the
 *   interpreter's own macros, which expand to the redefined ones at the call site, so they
 *   record with the caller's line too.
 *
 * SEMANTICS
 *   Each wrapper calls the interpreter's own inline function (captured below, before the
 *   macro is redefined), so the effect on the object is exactly the interpreter's on 3.10,
 *   3.11, 3.12 (immortal objects), 3.13 (also free-threaded), 3.14 and 3.15 (a 32-bit
 *   count beside ob_overflow and ob_flags). It reads Py_REFCNT() before, writes a 32-byte record (docs/ring-format.md), then performs the operation.
 *   A DECREF is recorded *before* it runs, because it may free the object.
 *
 * Py_LIMITED_API
 *   Works: the wrappers call what the limited API gives (on 3.12+ limited, Py_INCREF is
 *   the exported Py_IncRef-style function), so the extension still uses only stable-ABI
 *   symbols of Python; it gains a dependency on libpyref. Immortality is then inferred
 *   from the count, as _Py_IsImmortal is not in the limited API.
 *
 * CONFIGURATION
 *   PYREF_SHIM_OFF defined before inclusion: the shim is the real Python.h, nothing else.
 *   C and C++ (GNU statement expressions: gcc, clang, g++, clang++).
 */
#if defined(Py_PYTHON_H) && !defined(PYREF_SHIM_ACTIVE) && !defined(PYREF_SHIM_OFF)
#error "pyref: the interpreter's Python.h was included before pyref's shim, so the code before this line records nothing: give $(pyref-config --cflags) before every other -I flag and include <Python.h> (not a path to it) first"
#endif
#include_next <Python.h>

/* The link-time half of the include-order check: every translation unit compiled through
 * this file defines the marker (weak: one per module; hidden: not exported), and
 * `pyref-config --libs` / pyref.pc link with -Wl,--require-defined=<marker>. A module
 * whose compiler found the interpreter's Python.h first (the shim's -I not first) then
 * fails to link, the linker naming the marker, whose name says what to do, instead of
 * loading untraced with an empty ring. Defined under PYREF_SHIM_OFF too: that build chose
 * to record nothing. */
#ifndef PYREF_SHIM_MARKER_DEFINED
#define PYREF_SHIM_MARKER_DEFINED 1
#ifdef __cplusplus
extern "C"
#endif
    __attribute__((weak, visibility("hidden"))) const char
        pyref__Python_h_shim_not_compiled__put_pyref_config_cflags_before_other_include_flags[] =
            "pyref shim";
#endif

#if !defined(PYREF_SHIM_OFF) && !defined(PYREF_SHIM_ACTIVE)
#define PYREF_SHIM_ACTIVE 1

#include <pyref/ring.h>

#if PY_VERSION_HEX < 0x030A0000
#error "pyref supports CPython 3.10 and later"
#endif
#if !defined(__GNUC__)
#error "the pyref shim needs GNU C statement expressions (gcc or clang)"
#endif

/* One static site record per use of a macro: no strings in the ring. */
#define PYREF__SITE(API)                                                                   \
    __extension__({                                                                        \
        static const struct pyref_site pyref__site_ = {PYREF_SITE_MAGIC, __LINE__,         \
                                                       __FILE__, __func__, API};           \
        &pyref__site_;                                                                     \
    })

/* The interpreter's own operations, captured while Py_INCREF/Py_DECREF still mean them. */
static inline __attribute__((always_inline)) void pyref__real_incref(PyObject *op)
{
    Py_INCREF(op);
}

#if !defined(Py_LIMITED_API) || PY_VERSION_HEX >= 0x030C0000
static inline __attribute__((always_inline)) int pyref__is_immortal(PyObject *op)
{
#if PY_VERSION_HEX >= 0x030C0000 && !defined(Py_LIMITED_API)
    return _Py_IsImmortal(op);
#elif PY_VERSION_HEX >= 0x030C0000
    return (int32_t)Py_REFCNT(op) < 0; /* what _Py_IsImmortal tests on 64-bit GIL builds */
#else
    (void)op;
    return 0;
#endif
}
#else
#define pyref__is_immortal(op) 0
#endif

/* The count as Py_REFCNT() gives it, read before the operation. Where the interpreter's
 * INCREF/DECREF store only a 32-bit count (3.12/3.13 GIL builds: ob_refcnt_split; 3.14+:
 * ob_refcnt, the low half of ob_refcnt_full beside ob_overflow and ob_flags), read those 32
 * bits: a 64-bit load just after such a store cannot be store-forwarded and stalls ~15
 * cycles, and the high half of a mortal object's count is 0 (an immortal one is flagged
 * anyway). Free-threaded builds: Py_REFCNT() adds ob_ref_local and ob_ref_shared. */
#if defined(Py_LIMITED_API) || defined(Py_GIL_DISABLED) || SIZEOF_VOID_P <= 4
#define pyref__refcnt(op) Py_REFCNT(op)
#elif PY_VERSION_HEX < 0x030C0000
#define pyref__refcnt(op) ((op)->ob_refcnt) /* what Py_REFCNT() returns, without its call at -O0 */
#elif PY_VERSION_HEX < 0x030E0000
#define pyref__refcnt(op) ((Py_ssize_t)(op)->ob_refcnt_split[PY_BIG_ENDIAN])
#else
#define pyref__refcnt(op) ((Py_ssize_t)(op)->ob_refcnt)
#endif

/* Whether the interpreter's own Py_INCREF leaves the count unchanged, given the count
 * `before` it (pyref__refcnt) and `immortal` (pyref__is_immortal): the exact test of each
 * version's Py_INCREF, which is not always _Py_IsImmortal. 3.12/3.13 (64-bit GIL builds)
 * saturate at UINT32_MAX; 3.14+ stop at _Py_IMMORTAL_INITIAL_REFCNT (3 << 30) while an
 * object is immortal from 1 << 31 on, so a count in between still moves; free-threaded
 * builds and 32-bit ones test immortality. Py_DECREF is a no-op exactly when immortal on
 * every 3.12+ build. Under Py_LIMITED_API the call goes to the interpreter's _Py_IncRef,
 * which runs the same inline code. */
#if PY_VERSION_HEX < 0x030C0000
#define pyref__incref_noop(before, immortal) ((void)(before), (void)(immortal), 0)
#elif defined(Py_GIL_DISABLED) || SIZEOF_VOID_P <= 4
#define pyref__incref_noop(before, immortal) ((void)(before), (immortal))
#elif PY_VERSION_HEX < 0x030E0000
#define pyref__incref_noop(before, immortal) ((void)(immortal), (uint32_t)(before) == UINT32_MAX)
#else
#define pyref__incref_noop(before, immortal)                                               \
    ((void)(immortal), (uint32_t)(before) >= (uint32_t)(3UL << 30))
#endif

/* 3.13t: did this thread's operation go to ob_ref_shared (not the owner)? */
#if defined(Py_GIL_DISABLED) && !defined(Py_LIMITED_API)
#define pyref__shared_flag(op) (_Py_IsOwnedByCurrentThread(op) ? 0u : (unsigned)PYREF_OP_SHARED)
#else
#define pyref__shared_flag(op) 0u
#endif

#undef Py_DECREF
#if defined(Py_REF_DEBUG) && !defined(Py_LIMITED_API) && PY_VERSION_HEX >= 0x030B0000
/* Debug interpreters take the caller's file and line, used by the negative-refcount fatal
 * error: give them the user's site, not this header's. */
#define pyref__real_decref(op, site) Py_DECREF((site)->file, (int)(site)->line, op)
#elif defined(Py_REF_DEBUG) && !defined(Py_LIMITED_API)
#define pyref__real_decref(op, site) _Py_DECREF((site)->file, (int)(site)->line, op)
#elif PY_VERSION_HEX >= 0x030B0000
#define pyref__real_decref(op, site) Py_DECREF(op)
#else
#define pyref__real_decref(op, site) _Py_DECREF(op)
#endif

/* After each record: note the object for the free hook and record the Python context.
 * `count` is the count the record carries. Defined in pyref_hooks.h, included at the end
 * of this file. */
static inline void pyref__after_record(PyObject *op, Py_ssize_t count);

/* Records then performs Py_INCREF(op) on the calling thread's descriptor `t`: through
 * pyref__record_idle() when `idle` (the caller read t->busy as 0), else through
 * pyref_record(), which handles every state of the thread (its first record, a signal
 * handler's record inside one of its records). */
static inline __attribute__((always_inline)) void
pyref__incref_on(PyObject *op, const struct pyref_site *site, struct pyref_thread *t, int idle)
{
    Py_ssize_t before = pyref__refcnt(op);
    /* Tested before the INCREF: a 64-bit load right after its 32-bit store cannot be
     * store-forwarded and stalls ~15 cycles (bench/RESULTS.md). */
    int immortal = pyref__is_immortal(op);
    pyref__real_incref(op);
    unsigned kind = PYREF_OP_INCREF | pyref__shared_flag(op) | (immortal ? PYREF_OP_IMMORTAL : 0);
    int delta = pyref__incref_noop(before, immortal) ? 0 : 1;
    if (idle ? pyref__record_idle(t, op, site, before, kind, delta)
             : pyref_record(op, site, before, kind, delta))
        pyref__after_record(op, before); /* pyref_hooks.h; not when recording is off */
}

/* Records then performs Py_DECREF(op), as pyref__incref_on(). The record is written first:
 * the DECREF may free the object (op DEALLOC when the count goes 1 -> 0). */
static inline __attribute__((always_inline)) void
pyref__decref_on(PyObject *op, const struct pyref_site *site, struct pyref_thread *t, int idle)
{
    Py_ssize_t before = pyref__refcnt(op);
    int immortal = pyref__is_immortal(op);
    unsigned kind = immortal ? PYREF_OP_DECREF | PYREF_OP_IMMORTAL
                    : before == 1 ? PYREF_OP_DEALLOC
                                  : PYREF_OP_DECREF;
    kind |= pyref__shared_flag(op);
    int delta = immortal ? 0 : -1;
    if (idle ? pyref__record_idle(t, op, site, before, kind, delta)
             : pyref_record(op, site, before, kind, delta))
        pyref__after_record(op, before); /* pyref_hooks.h: before the DECREF, which may free op */
    pyref__real_decref(op, site);
}

/* The calling thread's descriptor for the wrappers below: pyref_tls_thread read once per
 * call of the function they are inlined into (a `const` function, so gcc reuses its result
 * across the function's records, calls and loops) instead of once per site. A value read
 * earlier in the same call is still right: a registered thread keeps its descriptor until
 * it exits (and a fork child the forking thread's), and one read as pyref_thread_none
 * before the thread's first record (busy 1) sends the site to the slow path, which reads
 * pyref_tls_thread itself. Unoptimised builds read it directly: there the call would be
 * one per site. */
#if defined(__OPTIMIZE__)
static __attribute__((noinline, const, unused)) struct pyref_thread *pyref__thread(void)
{
    return pyref_tls_thread;
}
#else
#define pyref__thread() pyref_tls_thread
#endif

/* The calling thread is busy (no descriptor yet, or a signal handler's record inside one
 * of its records) and recording is on: out of line, rare. */
static __attribute__((noinline, cold, unused)) void pyref__incref_busy(PyObject *op,
                                                                      const struct pyref_site *site)
{
    pyref__incref_on(op, site, NULL, 0);
}
static __attribute__((noinline, cold, unused)) void pyref__decref_busy(PyObject *op,
                                                                      const struct pyref_site *site)
{
    pyref__decref_on(op, site, NULL, 0);
}

/* Records then performs Py_INCREF(op). op must be non-NULL, as for Py_INCREF. The thread's
 * `busy` word is tested first, once: 0 (the common case) records inline; PYREF_BUSY_OFF
 * (PYREF=off) performs the interpreter's INCREF and nothing else, before reading anything
 * of op; any other value goes out of line. */
static inline __attribute__((always_inline)) void pyref_incref(PyObject *op,
                                                             const struct pyref_site *site)
{
    struct pyref_thread *t = pyref__thread();
    if (__builtin_expect(t->busy != 0, 0)) {
        if (pyref__busy_off(t->busy))
            pyref__real_incref(op);
        else
            pyref__incref_busy(op, site);
        return;
    }
    pyref__incref_on(op, site, t, 1);
}

/* Records then performs Py_DECREF(op); the busy test as in pyref_incref(). */
static inline __attribute__((always_inline)) void pyref_decref(PyObject *op,
                                                             const struct pyref_site *site)
{
    struct pyref_thread *t = pyref__thread();
    if (__builtin_expect(t->busy != 0, 0)) {
        if (pyref__busy_off(t->busy))
            pyref__real_decref(op, site);
        else
            pyref__decref_busy(op, site);
        return;
    }
    pyref__decref_on(op, site, t, 1);
}

static inline __attribute__((always_inline)) void pyref_xincref(PyObject *op,
                                                              const struct pyref_site *site)
{
    if (op != NULL)
        pyref_incref(op, site);
}

static inline __attribute__((always_inline)) void pyref_xdecref(PyObject *op,
                                                              const struct pyref_site *site)
{
    if (op != NULL)
        pyref_decref(op, site);
}

static inline __attribute__((always_inline)) PyObject *
pyref_newref(PyObject *op, const struct pyref_site *site)
{
    pyref_incref(op, site);
    return op;
}

static inline __attribute__((always_inline)) PyObject *
pyref_xnewref(PyObject *op, const struct pyref_site *site)
{
    pyref_xincref(op, site);
    return op;
}

/* Unoptimised builds (GCC at -O0: a `-O0 -g` debug build): the always_inline wrappers are
 * inlined there but compiled unoptimised, every local in memory, ~60 ns a transition
 * (bench/opt_levels.py). There each macro calls one out-of-line copy per translation unit
 * compiled with optimize("O2"), into which the record, the interest-table test and the
 * interpreter's own INCREF/DECREF are inlined: one call a transition. (Clang has no
 * optimize attribute: it keeps the inline path; so does -DPYREF_O0_INLINE, bench/run.py's
 * comparison row.) */
#if !defined(__OPTIMIZE__) && defined(__GNUC__) && !defined(__clang__) && !defined(PYREF_O0_INLINE)
#define PYREF__O2_FN static __attribute__((noinline, unused, optimize("O2")))
/* the C-API origin helpers (pyref_capi_prelude.h) get the same copies, and its
 * out-of-line helpers (format walkers) the same optimisation */
#define PYREF__O0_COPIES 1
#define PYREF__O0_OPT __attribute__((optimize("O2")))
PYREF__O2_FN void pyref__incref_o2(PyObject *op, const struct pyref_site *site)
{
    pyref_incref(op, site);
}
PYREF__O2_FN void pyref__decref_o2(PyObject *op, const struct pyref_site *site)
{
    pyref_decref(op, site);
}
PYREF__O2_FN void pyref__xincref_o2(PyObject *op, const struct pyref_site *site)
{
    pyref_xincref(op, site);
}
PYREF__O2_FN void pyref__xdecref_o2(PyObject *op, const struct pyref_site *site)
{
    pyref_xdecref(op, site);
}
PYREF__O2_FN PyObject *pyref__newref_o2(PyObject *op, const struct pyref_site *site)
{
    return pyref_newref(op, site);
}
PYREF__O2_FN PyObject *pyref__xnewref_o2(PyObject *op, const struct pyref_site *site)
{
    return pyref_xnewref(op, site);
}
#define PYREF__OP(name) pyref__##name##_o2
#else
#define PYREF__OP(name) pyref_##name
#define PYREF__O0_OPT
#endif

#undef Py_INCREF
#undef Py_XINCREF
#undef Py_XDECREF
#undef Py_NewRef
#undef Py_XNewRef
#define Py_INCREF(op) PYREF__OP(incref)(_PyObject_CAST(op), PYREF__SITE("Py_INCREF"))
#define Py_DECREF(op) PYREF__OP(decref)(_PyObject_CAST(op), PYREF__SITE("Py_DECREF"))
#define Py_XINCREF(op) PYREF__OP(xincref)(_PyObject_CAST(op), PYREF__SITE("Py_XINCREF"))
#define Py_XDECREF(op) PYREF__OP(xdecref)(_PyObject_CAST(op), PYREF__SITE("Py_XDECREF"))
#define Py_NewRef(op) PYREF__OP(newref)(_PyObject_CAST(op), PYREF__SITE("Py_NewRef"))
#define Py_XNewRef(op) PYREF__OP(xnewref)(_PyObject_CAST(op), PYREF__SITE("Py_XNewRef"))

/* Reference origins of C-API calls (NEW / BORROW / STEAL): the per-API wrappers generated by
 * c_helpers/capi/gen_capi.py, over the hand-written helpers of pyref_capi_prelude.h. */
#include "pyref_capi.h"
/* Deallocation capture and Python context (allocator hook, frame reading). */
#include "pyref_hooks.h"

#endif /* !PYREF_SHIM_OFF && !PYREF_SHIM_ACTIVE */
