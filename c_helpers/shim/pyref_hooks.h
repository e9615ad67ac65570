/*
 * pyref_hooks.h — the interpreter-specific half of deallocation capture and Python context,
 * compiled into every traced extension (included at the end of the shim's Python.h).
 *
 * DEALLOCATION CAPTURE (FREE records)
 *   Every recorded object is noted in libpyref's interest table (address, pre-header size,
 *   type: two stores). A constructor, run when the extension is dlopen'ed by the import
 *   system (which holds the GIL), hands the object allocator to libpyref once per process,
 *   which chains its own free/realloc in front of whatever was installed (pymalloc,
 *   PYTHONMALLOC=malloc/debug, tracemalloc). When a noted object's memory is freed, by the
 *   extension or by CPython itself (list_dealloc, dict clear, gc, a __del__ chain), a FREE
 *   record (op 7) carries the address and the type. See c_helpers/frees.c.
 *
 * PYTHON CONTEXT (PYCTX AUX records), with PYREF_PYCONTEXT=1
 *   After a record, the innermost Python frame of the calling thread is read from its
 *   thread state (never creating a frame object, never calling into Python) and, when its
 *   code object or instruction differs from the thread's last one, an AUX record of kind
 *   PYREF_AUX_PYCTX gives the code object and the instruction's byte offset in co_code:
 *   a reader turns it into file.py:line with gdbext/pyref/reader/pyframes.py.
 *   Reading the frame: 3.10 tstate->frame (PyFrameObject: f_code, f_lasti); 3.11/3.12
 *   tstate->cframe->current_frame and 3.13+ tstate->current_frame, a _PyInterpreterFrame
 *   whose private layout is given below per version (checked against the interpreter's
 *   internal headers by tests/gdb/test_pycontext.py). On 3.14+ f_executable is a
 *   _PyStackRef: a tagged pointer, untagged before use. The thread state is the calling thread's
 *   own: 3.12+ through the interpreter's thread-local (found once, see context.c), 3.10/3.11
 *   the GIL holder's, used only when it belongs to the calling thread. No thread state or
 *   no frame (a C thread, the GIL released by another thread) means no frame is read.
 *
 * Not with Py_LIMITED_API (the object layout is not part of it): both are then off for this
 * extension; another traced extension of the process may still install the free hook.
 */
#ifndef PYREF_HOOKS_SHIM_H
#define PYREF_HOOKS_SHIM_H

#include <stddef.h>
#include <pyref/hooks.h>

#if defined(Py_LIMITED_API) || PY_VERSION_HEX >= 0x03100000 || defined(PYREF__HOOKS_OFF)

/* Unknown layout (a version after 3.15, the limited API) or hooks off: record nothing
 * extra. */
static inline __attribute__((always_inline)) void pyref__after_record(PyObject *op,
                                                                     Py_ssize_t count)
{
    (void)op;
    (void)count;
}

#else /* full API, 3.10-3.15 */

#define PYREF_HOOKS_ACTIVE 1 /* for code that wants to know: FREE capture and PYCTX built in */

#include <pthread.h>
#if PY_VERSION_HEX < 0x030B0000
#include <frameobject.h> /* 3.10: PyFrameObject's fields (public, not in Python.h) */
#endif

/* ---------------------------------------------------------------------------------------
 * Object layout
 * ------------------------------------------------------------------------------------- */

/* Bytes between a block's start and the object: PyGC_Head (two words) for GC types except
 * on free-threaded builds, plus the two-word pre-header of managed dict/weakref types
 * (3.11+). Type objects of static types are "GC" but not in a block: never freed, so never
 * probed. */
#if defined(Py_GIL_DISABLED)
#define PYREF__GC_HEAD_CODE(f) 0u
#else
#define PYREF__GC_HEAD_CODE(f) ((unsigned)((f) >> 14) & 1u) /* Py_TPFLAGS_HAVE_GC */
#endif
#if PY_VERSION_HEX >= 0x030C0000
#define PYREF__PREHEADER_FLAGS Py_TPFLAGS_PREHEADER
#elif PY_VERSION_HEX >= 0x030B0000
#define PYREF__PREHEADER_FLAGS Py_TPFLAGS_MANAGED_DICT
#else
#define PYREF__PREHEADER_FLAGS 0
#endif

#ifdef __cplusplus
#define PYREF__STATIC_ASSERT static_assert
#else
#define PYREF__STATIC_ASSERT _Static_assert
#endif
#if !defined(Py_GIL_DISABLED)
PYREF__STATIC_ASSERT(Py_TPFLAGS_HAVE_GC == (1UL << 14), "Py_TPFLAGS_HAVE_GC bit");
#endif
PYREF__STATIC_ASSERT(sizeof(PyMemAllocatorEx) == sizeof(struct pyref_allocator) &&
                   offsetof(PyMemAllocatorEx, free) == offsetof(struct pyref_allocator, free),
               "PyMemAllocatorEx layout");

static inline __attribute__((always_inline)) unsigned pyref__preheader(PyTypeObject *tp)
{
    unsigned long f = tp->tp_flags;
    return (PYREF__GC_HEAD_CODE(f) + ((f & PYREF__PREHEADER_FLAGS) != 0)) << 4;
}

/* ---------------------------------------------------------------------------------------
 * Frame layout (_PyInterpreterFrame is private: offsets per version)
 * ------------------------------------------------------------------------------------- */
#if PY_VERSION_HEX >= 0x030E0000
#define PYREF__FRAME_CODE 0   /* f_executable: a _PyStackRef (code object or None, tagged) */
#define PYREF__FRAME_INSTR 56 /* instr_ptr: the instruction executing */
#if defined(Py_GIL_DISABLED)
#define PYREF__FRAME_OWNER 78 /* after stackpointer, tlbc_index, return_offset */
#else
#define PYREF__FRAME_OWNER 74 /* after stackpointer, return_offset */
#endif
#define PYREF__FRAME_PREVIOUS 8
#elif PY_VERSION_HEX >= 0x030D0000
#define PYREF__FRAME_CODE 0   /* f_executable (a code object, or None) */
#define PYREF__FRAME_INSTR 56 /* instr_ptr: the instruction executing */
#define PYREF__FRAME_OWNER 70
#define PYREF__FRAME_PREVIOUS 8
#elif PY_VERSION_HEX >= 0x030C0000
#define PYREF__FRAME_CODE 0   /* f_code */
#define PYREF__FRAME_INSTR 56 /* prev_instr */
#define PYREF__FRAME_OWNER 70
#define PYREF__FRAME_PREVIOUS 8
#elif PY_VERSION_HEX >= 0x030B0000
#define PYREF__FRAME_CODE 32  /* f_code */
#define PYREF__FRAME_INSTR 56 /* prev_instr */
#define PYREF__FRAME_OWNER 69
#define PYREF__FRAME_PREVIOUS 48
#endif
/* Owners from PYREF__FRAME_NOT_CODE on are not Python code: 3.12/3.13 FRAME_OWNED_BY_CSTACK
 * (3, an entry frame); 3.14+ FRAME_OWNED_BY_INTERPRETER (3) and FRAME_OWNED_BY_CSTACK (4). */
#if PY_VERSION_HEX >= 0x030E0000
#define PYREF__FRAME_OWNED_BY_INTERPRETER 3
#define PYREF__FRAME_NOT_CODE PYREF__FRAME_OWNED_BY_INTERPRETER
#else
#define PYREF__FRAME_OWNED_BY_CSTACK 3
#define PYREF__FRAME_NOT_CODE PYREF__FRAME_OWNED_BY_CSTACK
#endif
/* The tag bits of a 3.14+ _PyStackRef (Py_TAG_BITS: 1 on 3.14 GIL builds, 3 on 3.15 and
 * free-threaded builds); objects are 8-byte aligned, so clearing both is safe everywhere. */
#if PY_VERSION_HEX >= 0x030E0000
#define PYREF__UNTAG(p) ((const void *)((uintptr_t)(p) & ~(uintptr_t)3))
#else
#define PYREF__UNTAG(p) ((const void *)(p))
#endif

/* 3.10/3.11: offset of gilstate.tstate_current in _PyRuntimeState (the GIL holder). */
#if PY_VERSION_HEX < 0x030B0000
#define PYREF__RUNTIME_TSTATE 568
#elif PY_VERSION_HEX < 0x030C0000
#define PYREF__RUNTIME_TSTATE 576
#endif
#if PY_VERSION_HEX < 0x030C0000
/* The runtime state, under a name of our own (the interpreter declares it only in its
 * internal headers, with a type we must not repeat). */
extern char pyref__py_runtime[] __asm__("_PyRuntime");
#endif

#define PYREF__LOAD(base, off) (*(void *const *)((const char *)(base) + (off)))

/* The interpreter's exported "current thread state, or NULL" (3.13 made
 * _PyThreadState_UncheckedGet an alias, 3.14 deprecates it). */
#if PY_VERSION_HEX >= 0x030D0000
#define PYREF__TSTATE_GETTER PyThreadState_GetUnchecked
#else
#define PYREF__TSTATE_GETTER _PyThreadState_UncheckedGet
#endif

/* The calling thread's own thread state, or NULL. Never faults, never calls into Python. */
static inline __attribute__((always_inline)) PyThreadState *pyref__tstate(void)
{
#if PY_VERSION_HEX >= 0x030C0000
#if defined(__x86_64__)
    intptr_t off = pyref_pyctx_tss_off;
    if (__builtin_expect(off != 0, 1)) {
        PyThreadState *ts;
        __asm__("mov %%fs:(%1), %0" : "=r"(ts) : "r"(off));
        return ts;
    }
#endif
    return PYREF__TSTATE_GETTER();
#else
    PyThreadState *ts = (PyThreadState *)__atomic_load_n(
        (void **)(pyref__py_runtime + PYREF__RUNTIME_TSTATE), __ATOMIC_RELAXED);
    struct pyref_pyctx_tls *c = &pyref_tls_pyctx;
    if (__builtin_expect(c->thread_id == 0, 0))
        c->thread_id = (uint64_t)pthread_self();
    /* the GIL holder's; another thread's frames may be popped under our feet */
    if (ts == NULL || ts->thread_id != (unsigned long)c->thread_id)
        return NULL;
    return ts;
#endif
}

/* Out of line, when the context changed: validates the frame, computes the byte offset of
 * the instruction, writes the PYCTX record. `frame` may be NULL (no Python frame). */
static __attribute__((noinline, cold, unused)) PYREF__O0_OPT void pyref__pycontext_slow(void *frame)
{
    const void *code = NULL, *instr = NULL;
    int64_t offset = -1;
#if PY_VERSION_HEX >= 0x030B0000
    for (int hops = 0; frame != NULL && hops < 4; hops++) {
#if PY_VERSION_HEX >= 0x030C0000
        if (*((const char *)frame + PYREF__FRAME_OWNER) >= PYREF__FRAME_NOT_CODE) {
            frame = PYREF__LOAD(frame, PYREF__FRAME_PREVIOUS);
            continue;
        }
#endif
        code = PYREF__UNTAG(PYREF__LOAD(frame, PYREF__FRAME_CODE));
        instr = PYREF__LOAD(frame, PYREF__FRAME_INSTR);
        if (code == NULL || Py_TYPE((PyObject *)code) != &PyCode_Type) {
            code = instr = NULL; /* 3.13+: f_executable may be None */
            break;
        }
        offset = (const char *)instr -
                 ((const char *)code + offsetof(PyCodeObject, co_code_adaptive));
        /* outside co_code_adaptive (3.14t's per-thread bytecode copies): unknown */
        if (offset < 0 || offset >= (int64_t)Py_SIZE((PyObject *)code) * 2)
            offset = -1;
        break;
    }
#else
    if (frame != NULL) {
        PyFrameObject *f = (PyFrameObject *)frame;
        code = f->f_code;
        instr = (const void *)(intptr_t)f->f_lasti;
        offset = f->f_lasti < 0 ? -1 : (int64_t)f->f_lasti * 2;
    }
#endif
    (void)instr;
    /* the cache is keyed on what the fast path compares: the frame's raw fields */
#if PY_VERSION_HEX >= 0x030B0000
    const void *key_code = frame ? PYREF__LOAD(frame, PYREF__FRAME_CODE) : NULL;
    const void *key_instr = frame ? PYREF__LOAD(frame, PYREF__FRAME_INSTR) : NULL;
#else
    const void *key_code = frame ? (const void *)((PyFrameObject *)frame)->f_code : NULL;
    const void *key_instr =
        frame ? (const void *)(intptr_t)((PyFrameObject *)frame)->f_lasti : NULL;
#endif
    pyref_pyctx_emit(code, offset, key_code, key_instr);
}

/* After a record, with PYCTX on: reads the innermost Python frame; writes a PYCTX record
 * only when (code, instruction) changed or the last one is 1/8 of a ring old. */
static inline __attribute__((always_inline)) void pyref__pycontext(void)
{
    if (!pyref_hot.pyctx_on)
        return;
    PyThreadState *ts = pyref__tstate();
    void *frame = NULL;
    if (ts != NULL) {
#if PY_VERSION_HEX >= 0x030D0000
        frame = ts->current_frame;
#elif PY_VERSION_HEX >= 0x030B0000
        frame = ts->cframe != NULL ? ts->cframe->current_frame : NULL;
#else
        frame = ts->frame;
#endif
    }
    const void *code = NULL, *instr = NULL;
    if (frame != NULL) {
#if PY_VERSION_HEX >= 0x030B0000
        code = PYREF__LOAD(frame, PYREF__FRAME_CODE);
        instr = PYREF__LOAD(frame, PYREF__FRAME_INSTR);
#else
        code = ((PyFrameObject *)frame)->f_code;
        instr = (const void *)(intptr_t)((PyFrameObject *)frame)->f_lasti;
#endif
    }
    struct pyref_pyctx_tls *c = &pyref_tls_pyctx;
    struct pyref_thread *t = pyref_tls_thread;
    if (__builtin_expect(code == c->code && instr == c->instr, 1) &&
        (t == &pyref_thread_none || t->head - c->pos < (t->mask >> 3)))
        return;
    pyref__pycontext_slow(frame);
}

/* Whether `count` (as recorded: pyref__refcnt, Py_REFCNT) can be a live object's: not 0
 * or negative, and, where the shim reads 32 bits of it (3.12+ GIL builds, 64-bit), not a
 * freed block's debug fill (0xdd..., 0xcd..., 0xfd...), which then reads as a huge
 * positive count (no immortal count is one of those). */
static inline __attribute__((always_inline)) int pyref__count_live(Py_ssize_t count)
{
    uint32_t lo = (uint32_t)count;
    return count > 0 && lo != 0xddddddddu && lo != 0xcdcdcdcdu && lo != 0xfdfdfdfdu;
}

/* Whether `tp`, read from an object's ob_type, can be a type object's address: not NULL,
 * aligned, a user-space address (x86-64 and AArch64: below 2^47), and not a word of the
 * debug allocators' fills (PYMEM_DEADBYTE 0xdd, PYMEM_CLEANBYTE 0xcd, PYMEM_FORBIDDENBYTE
 * 0xfd), which is what ob_type holds once a debug build freed the object. A stale but
 * plausible pointer (pymalloc keeps ob_type of a freed block) is a type that still exists:
 * types outlive their instances. */
static inline __attribute__((always_inline)) int pyref__type_plausible(const void *tp)
{
    uint64_t w = (uint64_t)(uintptr_t)tp;
    if (w == 0 || (w & 7) != 0)
        return 0;
    if (w == 0xddddddddddddddddULL || w == 0xcdcdcdcdcdcdcdcdULL || w == 0xfdfdfdfdfdfdfdfdULL)
        return 0;
    return sizeof(void *) == 4 || w < (1ULL << 47);
}

/* The out-of-line half of pyref__after_record(): notes an object seen for the first time
 * (or again after its entry was taken), and, with PYCTX on (every record comes here then),
 * the Python context. `op` may be an object the caller already freed (a double DECREF, a
 * use after free): then its count (`count`, as recorded) is 0, negative or a fill, or its
 * type pointer is a fill, and neither the type nor anything else of it is touched here, so
 * that the fault, if any, happens in the caller's code or in CPython, not in pyref. */
static __attribute__((noinline, unused)) PYREF__O0_OPT void pyref__after_record_slow(PyObject *op,
                                                                      Py_ssize_t count)
{
    if (pyref__count_live(count) && !pyref_interest_noted(op)) {
        PyTypeObject *tp = op->ob_type; /* Py_TYPE(), without its call at -O0 */
        if (pyref__type_plausible(tp))
            pyref_interest_mark(op, tp, pyref__preheader(tp));
    }
    pyref__pycontext();
}

/* Called by the shim's wrappers right after each record, with the count the record
 * carries: makes sure the object is noted for the free hook, and the Python context
 * recorded when that is on. Inline, one table test: an object already noted, PYCTX off
 * (pyref/hooks.h: pyref_note_fast). */
static inline __attribute__((always_inline)) void pyref__after_record(PyObject *op,
                                                                     Py_ssize_t count)
{
    if (__builtin_expect(!pyref_note_fast(op), 0))
        pyref__after_record_slow(op, count);
}

/* ---------------------------------------------------------------------------------------
 * Installation, at dlopen
 * ------------------------------------------------------------------------------------- */

/* Runs in every translation unit that includes the shim; the first run in the process
 * installs, the others find it done (libpyref keeps the state). The import system calls
 * dlopen with the GIL held; when it is not (an embedder dlopen'ing the extension from a
 * bare thread, or before Py_Initialize), the hook is not installed and the header says
 * so (hooks bit FREES_REFUSED). */
__attribute__((constructor)) static void pyref__hooks_init(void)
{
    if (!Py_IsInitialized())
        return;
    int gil = PyGILState_Check();
    if (gil) {
        PyMemAllocatorEx a;
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &a);
        struct pyref_frees_layout layout = {(uint32_t)offsetof(PyObject, ob_type)};
        if (pyref_frees_hook((struct pyref_allocator *)&a, &layout, 0))
            PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &a);
        pyref_hooks_set(0, PY_VERSION_HEX);
        PyThreadState *ts = PYREF__TSTATE_GETTER();
        pyref_pyctx_init((const void *)&PYREF__TSTATE_GETTER, ts,
                         PY_VERSION_HEX >= 0x030C0000);
    } else {
        pyref_frees_hook(NULL, NULL, 1);
    }
}

#endif /* full API */
#endif /* PYREF_HOOKS_SHIM_H */
