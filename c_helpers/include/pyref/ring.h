/*
 * pyref/ring.h — the pyref ring: record layout and the inline recording fast path.
 *
 * This header is the C side of docs/ring-format.md (format version 2). It does not include
 * Python.h: the runtime (libpyref) is interpreter-agnostic, and the Python.h shim
 * (c_helpers/shim/Python.h) builds its Py_INCREF/Py_DECREF wrappers on pyref_record().
 *
 * Workload: called on every reference-count transition made by a traced extension's own
 * code, i.e. tens of millions of times a second. The fast path is inline, takes no lock,
 * makes no syscall, allocates nothing, and writes no cache line shared with other threads
 * except the global sequence counter (a relaxed load and store, see the format spec).
 */
#ifndef PYREF_RING_H
#define PYREF_RING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PYREF_MAGIC        0x474E524645525950ULL /* "PYREFRNG" little-endian */
#define PYREF_SITE_MAGIC   0x54535950U           /* "PYST" */
#define PYREF_FORMAT_VERSION 2 /* 2: BORROW/STEAL carry their container (docs/ring-format.md) */
#define PYREF_RECORD_SIZE  32
#define PYREF_THREAD_TABLE_OFF 256
#define PYREF_DEFAULT_RECORDS 1048576
#define PYREF_DEFAULT_THREADS 256

/* Operations (record.op bits 0-5). Keep in step with docs/ring-format.md and
 * gdbext/pyref/reader/ringformat.py. */
enum pyref_op {
    PYREF_OP_INCREF = 1,
    PYREF_OP_DECREF = 2,
    PYREF_OP_DEALLOC = 3, /* a DECREF taking the count 1 -> 0 */
    PYREF_OP_NEW = 4,
    PYREF_OP_BORROW = 5,
    PYREF_OP_STEAL = 6,
    PYREF_OP_FREE = 7,
    PYREF_OP_AUX = 8,
    PYREF_OP_FORK = 9,
    PYREF_OP_MARK = 10 /* a label the program wrote (pyref_mark); AUX TEXT records carry it */
};
#define PYREF_OP_MASK     0x3f
#define PYREF_OP_SHARED   0x40 /* 3.13t: the transition went to ob_ref_shared */
#define PYREF_OP_IMMORTAL 0x80 /* the object was immortal: count unchanged */

/* One call site. The shim creates one static const instance per macro use. */
struct pyref_site {
    uint32_t magic;   /* PYREF_SITE_MAGIC */
    uint32_t line;    /* __LINE__ */
    const char *file; /* __FILE__ */
    const char *func; /* __func__ */
    const char *api;  /* "Py_INCREF", "PyTuple_GetItem", ... or NULL */
};

/* One transition; 32 bytes. `commit` (seq | op | delta | tid) is written last. */
struct pyref_record {
    uint64_t obj;    /* object address */
    uint64_t site;   /* const struct pyref_site *, 0 for runtime records */
    int64_t refcnt;  /* count before the transition (op-specific for FREE, AUX, FORK) */
    union {
        uint64_t commit; /* 0 = empty or torn */
        struct {
            uint32_t seq;  /* low 32 bits of the global sequence number */
            uint8_t op;    /* enum pyref_op | PYREF_OP_SHARED | PYREF_OP_IMMORTAL */
            int8_t delta;  /* count after - count before */
            uint16_t tid;  /* registration serial of the writing thread */
        } c;
    } u;
};

/* A thread's slot in the header's thread table; 64 bytes, one cache line. Written only by
 * its own thread, except `state` (compare-and-swap at registration) and at fork. */
struct pyref_thread {
    struct pyref_record *ring; /* this thread's records, capacity entries */
    uint64_t head;             /* records written = position of the next record */
    uint64_t mask;             /* capacity - 1 */
    uint64_t *seqp;            /* &header->seq */
    uint64_t lost;             /* records dropped by the re-entry guard */
    uint32_t busy;             /* 1 while writing a record */
    uint32_t state;            /* PYREF_THREAD_FREE / _LIVE / _EXITED */
    uint64_t os_tid;           /* gettid() */
    uint16_t serial;           /* registration serial, copied into record.tid */
    uint8_t reserved[6];
};
enum { PYREF_THREAD_FREE = 0, PYREF_THREAD_LIVE = 1, PYREF_THREAD_EXITED = 2 };

/* The header: fixed part (256 bytes) followed by max_threads descriptors. */
struct pyref_ring_header {
    uint64_t magic;              /* PYREF_MAGIC, stored last at init */
    uint32_t version;            /* PYREF_FORMAT_VERSION */
    uint32_t header_size;        /* bytes: thread_table_off + max_threads * thread_desc_size */
    uint32_t record_size;        /* PYREF_RECORD_SIZE */
    uint32_t capacity;           /* records per thread ring, power of two */
    uint8_t word_size;           /* sizeof(void *) */
    uint8_t byte_order;          /* 1 little-endian, 2 big-endian */
    uint16_t field_count;        /* entries in fields[]: 8 */
    uint32_t pid;                /* owning process; rewritten in a fork child */
    uint8_t fields[8][2];        /* (offset, size) of obj site refcnt seq op delta tid commit */
    uint32_t thread_table_off;   /* PYREF_THREAD_TABLE_OFF */
    uint32_t thread_desc_size;   /* sizeof(struct pyref_thread) */
    uint32_t max_threads;        /* descriptors in the table */
    uint32_t flags;              /* bit 0: recording disabled (PYREF=off) */
    uint64_t threads_registered; /* registrations so far */
    uint64_t lost_nothread;      /* records dropped: no slot or no ring memory */
    uint64_t init_time_ns;       /* CLOCK_REALTIME at init */
    uint64_t forks;              /* fork children that inherited this ring */
    /* what the hooks record (pyref/hooks.h), set through pyref_hooks_set(): */
    uint32_t hooks;              /* PYREF_HOOK_* bits (pyref/hooks.h): FREE capture, PYCTX */
    uint32_t py_version;         /* PY_VERSION_HEX of the extension that installed hooks */
    uint8_t reserved0[24];
    uint64_t seq;                /* next global sequence number; own cache line */
    uint8_t reserved1[120];
    struct pyref_thread threads[]; /* max_threads entries */
};
#define PYREF_FLAG_DISABLED 1u

/* The process's ring header, or NULL before init / if init failed. Set once. */
extern struct pyref_ring_header *pyref_ring;

/* The descriptor of a thread that has none yet, and of every thread when recording is off:
 * `busy` is nonzero, so the fast path's one `busy` test also catches such a thread (no
 * separate NULL test per record): 1 sends it to the slow path, which registers it;
 * PYREF_BUSY_OFF (set once at init under PYREF=off) drops the record inline. Not in the
 * header's table; nothing else of it is ever written. */
extern struct pyref_thread pyref_thread_none;
/* Bit 31 alone, so that "off" is the sign of `busy`: the fast path's `busy != 0` test
 * (test + jne) leaves the sign flag set for PYREF_BUSY_OFF, and the cold branch tells off
 * from busy with one `js`/`jns` on those flags instead of a second compare
 * (pyref__busy_off()): one instruction less a site when off, the recording path unchanged. */
#define PYREF_BUSY_OFF 0x80000000u

/* Given a `busy` word already known nonzero: is it PYREF_BUSY_OFF (the only value with bit
 * 31 set)? A sign test of the same value, which gcc answers from the flags of the `!= 0`
 * test before it. */
static inline __attribute__((always_inline)) int pyref__busy_off(uint32_t busy)
{
    return (int32_t)busy < 0;
}

/* The calling thread's descriptor: &pyref_thread_none until its first record, never NULL.
 * initial-exec TLS: the fast path reads it with one %fs-relative load (the default model
 * costs a call). */
extern __thread struct pyref_thread *pyref_tls_thread
    __attribute__((tls_model("initial-exec")));

/*
 * Out-of-line slow path of pyref_record(), taken when the calling thread's descriptor is
 * busy: when it is pyref_thread_none, registers the thread (claims a slot, maps its ring)
 * and writes the record, or drops it when recording is disabled (not counted), when no
 * slot or memory can be had or the thread is already registering (counted in
 * header.lost_nothread); otherwise a signal handler interrupted a record of this thread,
 * and the handler's record is dropped and counted in thread.lost. Returns 1 when the
 * record was written, else 0. Async-signal-safe (uses only atomics and mmap); never calls
 * into Python.
 */
int pyref_record_slow(const void *obj, const struct pyref_site *site, int64_t refcnt,
                       unsigned op, int delta);

/* True when recording is off for the whole process (PYREF=off): the calling thread's
 * descriptor is pyref_thread_none with busy PYREF_BUSY_OFF, which no other state has. One
 * TLS load, one load and a predictable branch: the shim and the C-API wrappers test it
 * before anything else, so a build with tracing compiled in but switched off does only the
 * interpreter's own work. Before the ring set exists (and in every other state) false: the
 * record then reaches pyref_record_slow(), which drops it when recording is off. Never
 * changes once the ring set is made. */
static inline __attribute__((always_inline)) int pyref_recording_off(void)
{
    /* an equality (cmp with memory + je), not pyref__busy_off(): here no test of the same
     * word comes first whose flags a sign test could reuse */
    return __builtin_expect(pyref_tls_thread->busy == PYREF_BUSY_OFF, 0);
}

/* The slow path of pyref_record_pair(): pyref_record_slow(), then pyref_record_aux() when
 * the first record was written. Returns what pyref_record_slow() returned. */
int pyref_record_pair_slow(const void *obj, const struct pyref_site *site, int64_t refcnt,
                            unsigned op, int delta, const void *aux_obj, uint64_t aux_kind,
                            int64_t aux_value);

/* Creates the ring set now if it does not exist yet (it normally is created when the
 * library loads; a traced extension's constructor may run first). Idempotent,
 * thread-safe; pyref_ring may stay NULL if memory cannot be had. */
void pyref_ring_init(void);

/* Sets `bits` (PYREF_HOOK_*, pyref/hooks.h) in header.hooks, and header.py_version when
 * `py_version` is nonzero, creating the ring set first if needed; a no-op when it cannot
 * be had. Thread-safe for the bits (atomic OR); py_version is written by load-time callers
 * that hold the GIL. */
void pyref_hooks_set(uint32_t bits, uint32_t py_version);

/* Writes an AUX record carrying the seq of the calling thread's previous record.
 * Same contract as pyref_record(). */
void pyref_record_aux(const void *obj, uint64_t kind, int64_t value);

#define PYREF__SIGNAL_FENCE() __atomic_signal_fence(__ATOMIC_SEQ_CST)

/* A record's obj/site/refcnt stores. Plain stores (gcc merges obj and site into one 16-byte
 * store; relaxed atomics measured 5-10 % slower per transition on x86-64), except under
 * ThreadSanitizer, where they are relaxed atomics: a reader of a running process's ring
 * (tests/c/test_ring_threads.c, seqlock style) races with them by design, and the commit
 * word, not these stores, is what makes such a reader's result consistent. */
#if defined(__SANITIZE_THREAD__)
#define PYREF__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PYREF__TSAN 1
#endif
#endif
#ifdef PYREF__TSAN
#define PYREF__FIELD_STORE(lv, v) __atomic_store_n(&(lv), (v), __ATOMIC_RELAXED)
#else
#define PYREF__FIELD_STORE(lv, v) ((void)((lv) = (v)))
#endif

/* The commit word: the record's seq, op, delta and the writer's serial (format spec). */
#define PYREF__COMMIT(seq, op, delta, tidbits)                                             \
    ((uint64_t)(uint32_t)(seq) | (uint64_t)((op) & 0xff) << 32 |                            \
     (uint64_t)(uint8_t)(int8_t)(delta) << 40 | (tidbits))

/*
 * The body of pyref_record() after its `busy` test: writes one record on `t`, the calling
 * thread's descriptor (pyref_tls_thread), whose `busy` this thread read as 0. A signal
 * handler that records between that test and this write restores `busy` to 0 before it
 * returns, so the precondition still holds. Returns 1. Callers that test `busy` themselves
 * (the shim, to drop PYREF=off before reading anything) call this; everyone else calls
 * pyref_record().
 */
static inline __attribute__((always_inline)) int
pyref__record_idle(struct pyref_thread *t, const void *obj, const struct pyref_site *site,
                   int64_t refcnt, unsigned op, int delta)
{
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head;
    struct pyref_record *r = t->ring + (h & t->mask);
    /* The default ring (2 MiB) does not stay in L2: fetch the line written 32 records on
     * (bench/RESULTS.md: -0.5 to -0.9 ns a record). Not wrapped at the ring's end: a
     * prefetch never faults, and 32 records a lap go unprefetched. */
    __builtin_prefetch(r + 32, 1, 3);
    uint64_t s = __atomic_load_n(t->seqp, __ATOMIC_RELAXED);
    __atomic_store_n(t->seqp, s + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&r->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    PYREF__FIELD_STORE(r->obj, (uint64_t)(uintptr_t)obj);
    PYREF__FIELD_STORE(r->site, (uint64_t)(uintptr_t)site);
    PYREF__FIELD_STORE(r->refcnt, refcnt);
    __atomic_store_n(&r->u.commit, PYREF__COMMIT(s, op, delta, (uint64_t)t->serial << 48),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
    return 1;
}

/*
 * Appends one record to the calling thread's ring. When the thread has no ring yet it
 * takes the slow path; when a signal handler interrupts a record on the same thread, the
 * handler's record is dropped and counted in thread.lost. Returns 1 when the record was
 * written, 0 when it was dropped (recording off, re-entered, no ring to be had): the shim
 * then skips the work that only matters for a recorded object. Thread-safe (each thread
 * writes only its own ring) and async-signal-safe. Does not touch *obj.
 */
static inline __attribute__((always_inline)) int
pyref_record(const void *obj, const struct pyref_site *site, int64_t refcnt, unsigned op,
             int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    /* one test: no descriptor yet (pyref_thread_none), recording off, or re-entered */
    uint32_t busy = t->busy;
    if (__builtin_expect(busy != 0, 0))
        return pyref__busy_off(busy) ? 0 : pyref_record_slow(obj, site, refcnt, op, delta);
    return pyref__record_idle(t, obj, site, refcnt, op, delta);
}

/* The body of pyref_record_pair() after its `busy` test; the precondition of
 * pyref__record_idle(). Returns 1. */
static inline __attribute__((always_inline)) int
pyref__record_pair_idle(struct pyref_thread *t, const void *obj, const struct pyref_site *site,
                        int64_t refcnt, unsigned op, int delta, const void *aux_obj,
                        uint64_t aux_kind, int64_t aux_value)
{
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head, mask = t->mask;
    struct pyref_record *r = t->ring + (h & mask), *a = t->ring + ((h + 1) & mask);
    __builtin_prefetch(r + 32, 1, 3);
    uint64_t s = __atomic_load_n(t->seqp, __ATOMIC_RELAXED);
    __atomic_store_n(t->seqp, s + 1, __ATOMIC_RELAXED);
    uint64_t tidbits = (uint64_t)t->serial << 48;
    /* one slot after the other, so that a crash tears at most one (docs/reliability.md) */
    __atomic_store_n(&r->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    PYREF__FIELD_STORE(r->obj, (uint64_t)(uintptr_t)obj);
    PYREF__FIELD_STORE(r->site, (uint64_t)(uintptr_t)site);
    PYREF__FIELD_STORE(r->refcnt, refcnt);
    __atomic_store_n(&r->u.commit, PYREF__COMMIT(s, op, delta, tidbits), __ATOMIC_RELEASE);
    __atomic_store_n(&a->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    PYREF__FIELD_STORE(a->obj, (uint64_t)(uintptr_t)aux_obj);
    PYREF__FIELD_STORE(a->site, aux_kind);
    PYREF__FIELD_STORE(a->refcnt, aux_value);
    __atomic_store_n(&a->u.commit, PYREF__COMMIT(s, PYREF_OP_AUX, 0, tidbits),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 2, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
    return 1;
}

/*
 * pyref_record() followed by pyref_record_aux(aux_obj, aux_kind, aux_value), written as one
 * sequence (one guard, one seq, one head update): what a C-API origin and the AUX naming
 * its container cost. The two records are exactly those the two calls would write; each
 * is committed by its own commit word, the origin first. Same contract as pyref_record();
 * returns 1 when the first record was written.
 */
static inline __attribute__((always_inline)) int
pyref_record_pair(const void *obj, const struct pyref_site *site, int64_t refcnt, unsigned op,
                  int delta, const void *aux_obj, uint64_t aux_kind, int64_t aux_value)
{
    struct pyref_thread *t = pyref_tls_thread;
    uint32_t busy = t->busy;
    if (__builtin_expect(busy != 0, 0))
        return pyref__busy_off(busy) ? 0
                                     : pyref_record_pair_slow(obj, site, refcnt, op, delta,
                                                                  aux_obj, aux_kind, aux_value);
    return pyref__record_pair_idle(t, obj, site, refcnt, op, delta, aux_obj, aux_kind,
                                   aux_value);
}

/*
 * Format 2: a BORROW or STEAL carries its container, index and count in its own record
 * (docs/ring-format.md, "Origin records"). Its `refcnt` is the origin word:
 *   bits 3-47   the container's address (8-byte aligned, below 2^48; 0: the call names none)
 *   bits 0-2, 48-63 and the record's `delta` byte   a 27-bit origin code, below
 * The code (bit 26 the layout) packs the object's count and its index + 1 (0: no index):
 *   code 0              the count and index did not fit: an AUX ORIGIN record follows
 *                       (obj = the index, refcnt = the count), written in the same sequence
 *   bit 26 clear        count in bits 18-25 (1..255),    index + 1 in bits 0-17 (< 2^18)
 *   bit 26 set          count in bits 8-25 (1..2^18-1), index + 1 in bits 0-7 (< 2^8)
 * A container that does not fit the word (unaligned, or above 2^48) is written as 0 in it
 * and named by an AUX CONTAINER record after the AUX ORIGIN (obj = the container, refcnt =
 * the index), as in format 1.
 */
#define PYREF_AUX_ORIGIN 0x13          /* obj = index (-1: none), refcnt = count */
#define PYREF_ORIGIN_PTR_MASK 0x0000FFFFFFFFFFF8ULL

/* The 27-bit origin code of (count, index), or 0 when they do not fit one. Cannot fail. */
static inline __attribute__((always_inline)) uint32_t pyref_origin_code(int64_t count,
                                                                         int64_t index)
{
    uint64_t ix = (uint64_t)index + 1; /* -1 (none) -> 0; below -1 -> huge: no fit */
    if (count >= 1 && count <= 0xFF && ix < (1u << 18))
        return (uint32_t)count << 18 | (uint32_t)ix;
    if (count >= 1 && count < (1 << 18) && ix < (1u << 8))
        return 1u << 26 | (uint32_t)count << 8 | (uint32_t)ix;
    return 0;
}

/* The origin word of a record with origin code `code` naming `container` (which the
 * caller checked fits PYREF_ORIGIN_PTR_MASK). */
static inline __attribute__((always_inline)) uint64_t pyref_origin_word(uint64_t container,
                                                                         uint32_t code)
{
    return container | (uint64_t)(code >> 11) << 48 | (uint64_t)(code >> 8 & 7);
}

/* AUX kind of the records that carry a MARK's label, 16 bytes each (obj, then refcnt). */
#define PYREF_AUX_TEXT 0x12
/* The longest label a MARK carries: longer ones are cut to this many bytes. */
#define PYREF_MARK_MAX 240

/*
 * Writes a MARK record labelled `label` (a NUL-terminated string; NULL is ""), on the
 * calling thread's ring: a boundary in the history that readers name records by (the
 * pytest plugin marks each test's start and end with its node id). The record's `obj` is
 * the number of label bytes copied (at most PYREF_MARK_MAX), `refcnt` the label's full
 * length (larger when it was cut); the bytes follow in AUX TEXT records, 16 a record,
 * zero-padded, all written in one sequence with one seq, like pyref_record_pair(): the
 * label is copied, the caller's string may go away at once. Thread-safe (each thread writes
 * its own ring) and async-signal-safe (no lock, no allocation; a mark from a signal handler
 * interrupting a record of the same thread is dropped and counted in thread.lost, like
 * any record). Out of line and never called by the shim: a program that does not mark
 * pays nothing. A no-op when recording is off or no ring can be had.
 */
void pyref_mark(const char *label);

/* Library version string, e.g. "0.1.0". */
extern const char pyref_version[];

#ifdef __cplusplus
}
#endif
#endif /* PYREF_RING_H */
