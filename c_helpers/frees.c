/*
 * frees.c — deallocation capture: FREE records for objects a traced extension touched,
 * whoever frees them (the extension's own DECREF, or CPython: a list freeing its items, a
 * dict clear, the garbage collector, a __del__ chain).
 *
 * How: the first traced extension to load (pyref_hooks.h's constructor, GIL held) hands us
 * the object domain's allocator (PyMem_GetAllocator(PYMEM_DOMAIN_OBJ)); we keep it as the
 * one to chain to and give back the same allocator with realloc and free replaced by ours
 * (malloc and calloc are the previous ones, untouched: allocation costs nothing more).
 * Whatever was installed before us keeps working: pymalloc, PYTHONMALLOC=malloc or =debug
 * hooks, mimalloc, tracemalloc started earlier.
 *
 * Which frees are recorded: only those of objects in the interest table (pyref/hooks.h,
 * mapped by hot.c), written by the shim at each record. The free hook gets a memory
 * *block*; the object sits 0 bytes into it (no GC header), 16 (after PyGC_Head, or the
 * free-threaded pre-header), or 32 (3.11+ managed dict/weakref pre-header + PyGC_Head).
 * The shim stores the object's pre-header size with its address, so the hook probes
 * block+0, +16, +32 and accepts a candidate only when the entry says its block starts at
 * exactly this block; it then reads the object's type from the block (intact: we run before
 * the real free) and accepts only if it equals the type stored at record time (catches
 * torn entries, free-list links left in ob_type, __class__ changes). So the hook never
 * reads outside the block being freed, and a miss costs three loads from one or two cache
 * lines of the table.
 *
 * Workload: every PyObject_Free/PyObject_Realloc of the process (hundreds of millions per
 * second in the interpreter). The hook takes no lock and does not allocate; a hit writes a
 * FREE record on the freeing thread (registering the thread's ring if needed).
 *
 * Not seen: objects parked on the interpreter's free lists instead of being freed (floats,
 * tuples, lists, dicts, ... on 3.10-3.13): their FREE appears when the free list releases
 * the memory, or never. Objects freed by another domain (a custom tp_free using PyMem_Free
 * or free()) are not seen either.
 */
#define _GNU_SOURCE
#include "pyref/hooks.h"

#include <stdlib.h>
#include <string.h>

volatile uint32_t pyref_frees_state;

/* The allocator we chain to, and what the hook needs of the interpreter's layout. Written
 * once before the hook is installed (the GIL orders that before any call of the hook). */
static struct pyref_allocator frees_prev;
static uint32_t frees_ob_type_off = 8;

/* The object of interest in `block`, or 0. On a hit, *type is its type and *pre the offset
 * of the object in the block. Reads only the table and the block's first 48 bytes at most,
 * and only at an offset the entry vouches is inside the block. */
static inline uint64_t frees_probe(const char *block, uint64_t *type, unsigned *pre)
{
    uint64_t b = (uint64_t)(uintptr_t)block;
    for (unsigned code = 0; code <= 2; code++) {
        uint64_t obj = b + 16u * code;
        struct pyref_interest *e = pyref_interest_entry(obj);
        if (__builtin_expect(__atomic_load_n(&e->obj, __ATOMIC_RELAXED) != (obj | code), 1))
            continue;
        uint64_t t = __atomic_load_n(&e->type, __ATOMIC_RELAXED);
        uint64_t actual;
        memcpy(&actual, block + 16u * code + frees_ob_type_off, sizeof actual);
        if (actual != t || t == 0)
            return 0; /* torn entry, recycled memory, or a free-list link in ob_type */
        /* Forget it: the address may be reused by an object nobody traced. */
        uint64_t expect = obj | code;
        __atomic_compare_exchange_n(&e->obj, &expect, 0, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED);
        *type = t;
        *pre = 16u * code;
        return obj;
    }
    return 0;
}

static void frees_free(void *ctx, void *block)
{
    (void)ctx;
    if (block != NULL) {
        uint64_t type;
        unsigned pre;
        uint64_t obj = frees_probe((const char *)block, &type, &pre);
        if (__builtin_expect(obj != 0, 0))
            pyref_record((const void *)(uintptr_t)obj, NULL, (int64_t)type, PYREF_OP_FREE, 0);
    }
    frees_prev.free(frees_prev.ctx, block);
}

/* A realloc that moves a block of interest frees the object at its old address: FREE
 * there, with an AUX MOVED naming the new address. (Variable-size objects are resized this
 * way with a count of 1: _PyBytes_Resize, _PyTuple_Resize, PyObject_GC_Resize.) */
static void *frees_realloc(void *ctx, void *block, size_t size)
{
    (void)ctx;
    uint64_t type = 0, obj = 0;
    unsigned pre = 0;
    if (block != NULL)
        obj = frees_probe((const char *)block, &type, &pre);
    void *r = frees_prev.realloc(frees_prev.ctx, block, size);
    if (__builtin_expect(obj != 0, 0)) {
        if (r != block && r != NULL) {
            pyref_record((const void *)(uintptr_t)obj, NULL, (int64_t)type, PYREF_OP_FREE, 0);
            pyref_record_aux((const void *)((const char *)r + pre), PYREF_AUX_MOVED, 0);
        } else if (r == block) {
            /* same block: the object lives on; put its entry back */
            pyref_interest_mark((const void *)(uintptr_t)obj, (const void *)(uintptr_t)type,
                                pre);
        } /* r == NULL: the old block is still allocated; the entry is gone (a lost FREE) */
    }
    return r;
}

int pyref_frees_hook(struct pyref_allocator *alloc, const struct pyref_frees_layout *layout,
                     int refuse)
{
    if (pyref_frees_state != PYREF_FREES_NONE)
        return 0;
    const char *env = getenv("PYREF_FREES");
    pyref_ring_init(); /* libpyref.a: our constructor may run before ring.c's */
    struct pyref_ring_header *h = __atomic_load_n(&pyref_ring, __ATOMIC_ACQUIRE);
    if (refuse || (env != NULL && strcmp(env, "0") == 0) || h == NULL ||
        (h->flags & PYREF_FLAG_DISABLED)) {
        pyref_frees_state = PYREF_FREES_REFUSED;
        pyref_hooks_set(PYREF_HOOK_FREES_REFUSED, 0);
        return 0;
    }
    frees_prev = *alloc;
    frees_ob_type_off = layout->ob_type_off;
    alloc->realloc = frees_realloc;
    alloc->free = frees_free;
    pyref_frees_state = PYREF_FREES_INSTALLED;
    pyref_hooks_set(PYREF_HOOK_FREES, 0);
    return 1;
}
