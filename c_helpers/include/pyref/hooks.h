/*
 * pyref/hooks.h — the interpreter-agnostic half of deallocation capture and Python context.
 *
 * Audience: the shim's pyref_hooks.h (compiled into each traced extension, knows the
 * interpreter's layout) and the runtime files c_helpers/hot.c (the shared state),
 * c_helpers/frees.c and c_helpers/context.c.
 * Nothing here includes Python.h: what depends on the interpreter reaches the runtime as
 * numbers (offsets) filled in by pyref_hooks.h.
 *
 * Format: FREE records (op 7) and the AUX kinds below are described in docs/ring-format.md.
 */
#ifndef PYREF_HOOKS_H
#define PYREF_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "pyref/ring.h"

#ifdef __cplusplus
extern "C" {
#endif

/* AUX kinds (record.site of an AUX record) written by the hooks. */
#define PYREF_AUX_PYCTX 0x10 /* obj = code object (0: no Python frame), refcnt = byte offset */
#define PYREF_AUX_MOVED 0x11 /* after a FREE: obj = the object's new address (realloc) */

/* header.hooks bits: what the hooks of this ring set do (readers: absence of FREE records
 * means nothing unless PYREF_HOOK_FREES is set). */
#define PYREF_HOOK_FREES 0x1        /* the object allocator's free is hooked */
#define PYREF_HOOK_FREES_REFUSED 0x2 /* not hooked: loaded without the GIL or under PYREF_FREES=0 */
#define PYREF_HOOK_PYCTX 0x4        /* PYCTX records are written (PYREF_PYCONTEXT) */

/* ---------------------------------------------------------------------------------------
 * Interest table (mapped by hot.c, written by the shim, read by frees.c)
 *
 * Direct-mapped, indexed by (object address >> 4) & mask. The shim writes an entry for
 * every object it records (two relaxed 8-byte stores, no read); the free hook reads the
 * entries at the candidate object addresses of a freed block. Entry words:
 *   obj:  0 (empty) | object address | (preheader bytes >> 4) in bits 0-3
 *   type: the object's ob_type when it was recorded
 * Races (free-threaded builds, or two writers on one slot) can leave an entry whose two
 * words come from different objects; the free hook then finds that the type it reads from
 * the freed block differs from `type` and records nothing. Races only lose FREE records.
 * ------------------------------------------------------------------------------------- */
struct pyref_interest {
    uint64_t obj;  /* object address | preheader code, 0 = empty */
    uint64_t type; /* ob_type at the object's last record */
};

/* What the shim reads after every record, together: one GOT load reaches all of it
 * (hot.c). */
struct pyref_hot {
    struct pyref_interest *interest_table; /* never NULL (a 1-entry dummy at worst) */
    uint64_t interest_mask; /* (entries - 1) * 16: a byte offset, see pyref_interest_entry */
    /* What the shim's per-record test reads (pyref_note_fast): the interest table, or,
     * while PYCTX records are on, a table of zeros of the same size, where no object is
     * ever found, so that every record takes the shim's out-of-line path, which writes
     * them: the default path pays nothing for the option. Same mask as the interest
     * table's (published in the same order). */
    struct pyref_interest *note_table;
    uint64_t note_mask;
    int pyctx_on; /* 1 when PYCTX records are written (PYREF_PYCONTEXT=1, context.c) */
};
extern struct pyref_hot pyref_hot;

/* Points note_table at the interest table, or at the table of zeros when pyctx_on (mapping
 * it the first time). Called by hot.c's init and when PYCTX is switched on (both at
 * load time, serialised by the loader or the GIL). */
void pyref_hot_retarget(void);

/* The per-record test of the shim: true when `obj` is noted (see pyref_interest_noted)
 * and PYCTX records are off; false sends the shim to its out-of-line path. */
static inline __attribute__((always_inline)) int pyref_note_fast(const void *obj)
{
    uint64_t a = (uint64_t)(uintptr_t)obj;
    uint64_t mask = __atomic_load_n(&pyref_hot.note_mask, __ATOMIC_ACQUIRE);
    const char *tab = (const char *)__atomic_load_n(&pyref_hot.note_table, __ATOMIC_RELAXED);
    const struct pyref_interest *e = (const struct pyref_interest *)(tab + (a & mask));
    return (__atomic_load_n(&e->obj, __ATOMIC_RELAXED) & ~(uint64_t)15) == a;
}

/* The entry of address `a`: entry (a >> 4) & (entries - 1), i.e. the byte offset
 * a & interest_mask (entries are 16 bytes). The mask is loaded before the table: the table
 * is published first (hot.c), so a new mask always comes with the new table; an old mask
 * (0) is in bounds of either. */
static inline __attribute__((always_inline)) struct pyref_interest *
pyref_interest_entry(uint64_t a)
{
    uint64_t mask = __atomic_load_n(&pyref_hot.interest_mask, __ATOMIC_ACQUIRE);
    char *tab = (char *)__atomic_load_n(&pyref_hot.interest_table, __ATOMIC_RELAXED);
    return (struct pyref_interest *)(tab + (a & mask));
}

/* Notes that `obj` (of type `type`, whose memory block starts `pre` bytes before it: 0, 16
 * or 32) has been recorded, so the free hook reports its deallocation. Thread-safe,
 * async-signal-safe, cannot fail; costs two stores. */
static inline __attribute__((always_inline)) void
pyref_interest_mark(const void *obj, const void *type, unsigned pre)
{
    uint64_t a = (uint64_t)(uintptr_t)obj;
    struct pyref_interest *e = pyref_interest_entry(a);
    __atomic_store_n(&e->obj, a | (pre >> 4), __ATOMIC_RELAXED);
    __atomic_store_n(&e->type, (uint64_t)(uintptr_t)type, __ATOMIC_RELAXED);
}

/* True when the interest table already notes `obj` (whatever its pre-header code): the
 * shim then skips re-noting it, which saves two stores and the type's flags in a loop
 * that touches the same objects. A type changed since (__class__ assignment) then goes
 * unnoticed, which only loses that object's FREE record. */
static inline __attribute__((always_inline)) int pyref_interest_noted(const void *obj)
{
    uint64_t a = (uint64_t)(uintptr_t)obj;
    struct pyref_interest *e = pyref_interest_entry(a);
    return (__atomic_load_n(&e->obj, __ATOMIC_RELAXED) & ~(uint64_t)15) == a;
}

/* Same layout as CPython's PyMemAllocatorEx (3.5+); pyref_hooks.h checks it. */
struct pyref_allocator {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr);
};

/* Interpreter facts the free hook needs. */
struct pyref_frees_layout {
    uint32_t ob_type_off; /* offsetof(PyObject, ob_type): 8, or 24 on free-threaded 3.13 */
};

/* States of pyref_frees_state (read by debuggers; written once, under the GIL). */
enum {
    PYREF_FREES_NONE = 0,      /* no traced extension has tried yet */
    PYREF_FREES_INSTALLED = 1, /* the object domain's realloc/free are pyref's */
    PYREF_FREES_REFUSED = 2,   /* not installed: no GIL at load, or PYREF_FREES=0 / PYREF=off */
};
extern volatile uint32_t pyref_frees_state;

/*
 * Called by the first traced extension to load (pyref_hooks.h's constructor), with the GIL
 * held and `alloc` filled by PyMem_GetAllocator(PYMEM_DOMAIN_OBJ). When the hook should be
 * installed, saves `*alloc` as the allocator to chain to, replaces alloc->realloc and
 * alloc->free by pyref's (ctx, malloc and calloc stay the previous ones, so allocation
 * costs nothing extra) and returns 1: the caller must then PyMem_SetAllocator(alloc).
 * Returns 0, leaving `*alloc` alone, when already installed by this runtime, refused
 * (`refuse` nonzero: the caller found no GIL), or disabled (PYREF=off, PYREF_FREES=0).
 * Not thread-safe: callers hold the GIL.
 */
int pyref_frees_hook(struct pyref_allocator *alloc, const struct pyref_frees_layout *layout,
                     int refuse);

/* ---------------------------------------------------------------------------------------
 * Python context (context.c)
 * ------------------------------------------------------------------------------------- */

/* Per-thread cache of the last PYCTX record, so a record is written only when the frame's
 * code object or instruction changes (or the last one is about to leave the ring). */
struct pyref_pyctx_tls {
    const void *code;   /* code object of the last PYCTX record (0: none / no frame) */
    const void *instr;  /* the frame's instruction pointer (or lasti) when it was written */
    uint64_t pos;       /* thread ring position of that record + 1; 0 = nothing written */
    uint64_t thread_id; /* pthread_self(), for the 3.10/3.11 GIL-holder check; 0 = unset */
};
extern __thread struct pyref_pyctx_tls pyref_tls_pyctx __attribute__((tls_model("initial-exec")));

/* pyref_hot.pyctx_on: 1 when PYCTX records are written (PYREF_PYCONTEXT=1 and a traced
 * extension enabled them); read on every transition. */

/* For 3.12+: the offset of the interpreter's thread-local tstate pointer from the thread
 * pointer (%fs base), or 0 when unknown (then the shim calls the interpreter's getter). */
extern intptr_t pyref_pyctx_tss_off;

/*
 * Decides once per process whether PYCTX records are written (PYREF_PYCONTEXT) and, given
 * `getter` (the interpreter's exported "current tstate" function) and `tstate` (what it
 * returns now, on the calling thread, which holds the GIL), finds the thread-local
 * variable holding it in the defining module's static TLS block: sets pyref_pyctx_tss_off
 * when exactly one word of that block holds `tstate` and the block is static TLS. Returns
 * pyref_hot.pyctx_on. Called with the GIL held; idempotent.
 */
int pyref_pyctx_init(const void *getter, const void *tstate, int want_tss);

/*
 * Writes a PYCTX AUX record (after the calling thread's last record): obj = `code` (0: no
 * Python frame), value = `offset` (byte offset of the instruction in co_code; -1 unknown),
 * and remembers (key_code, key_instr), the frame's raw fields the shim compares, in
 * pyref_tls_pyctx. Out of line: runs only when the context changed. Same guarantees as
 * pyref_record_aux(); a record dropped by the re-entry guard is retried next time.
 */
void pyref_pyctx_emit(const void *code, int64_t offset, const void *key_code,
                      const void *key_instr);

#ifdef __cplusplus
}
#endif
#endif /* PYREF_HOOKS_H */
