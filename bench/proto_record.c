/*
 * proto_record.c — where the recording fast path's time goes: the INCREF/DECREF pair loop
 * of micro_ext.c on fake objects (no interpreter), with pyref_record() as ring.h has it and
 * with variants that each leave out or change one part. Not part of `make bench`'s figures;
 * `bench/run.py --profile` builds and runs it (and callgrind on it, when valgrind is here).
 *
 * The variants write the same version-1 records into the same rings (struct pyref_thread
 * from ring.h); they only change how, so a reader would see the same bytes — except where a
 * variant drops a field on purpose (noted), which measures what that field costs.
 *
 * Usage: proto_record [N_PAIRS [ROUNDS [LOOP]]]
 *   prints one line per variant: median (min) ns per transition over ROUNDS rounds, the
 *   rounds interleaved; with LOOP (a loop_* name) runs only that loop once, silently (for
 *   counting its instructions under callgrind --toggle-collect=LOOP).
 */
#define _GNU_SOURCE
#include "pyref/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The object header of a 3.11 PyObject: enough for the pair loop. */
struct fake_obj {
    int64_t refcnt;
    void *type;
};

static const struct pyref_site site_inc = {PYREF_SITE_MAGIC, 1, "proto", "loop", "Py_INCREF"};
static const struct pyref_site site_dec = {PYREF_SITE_MAGIC, 2, "proto", "loop", "Py_DECREF"};

#define BARRIER(x) __asm__ volatile("" : : "r"(x) : "memory")

/* ---- variants of the fast path (same arguments and contract as pyref_record) -------- */

/* No re-entry guard: busy is neither tested nor written (unsafe against signal handlers;
 * measures the guard). */
static inline __attribute__((always_inline)) void rec_noguard(const void *obj,
                                                              const struct pyref_site *site,
                                                              int64_t refcnt, unsigned op,
                                                              int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    if (__builtin_expect(t == 0, 0)) {
        pyref_record_slow(obj, site, refcnt, op, delta);
        return;
    }
    uint64_t h = t->head;
    struct pyref_record *r = t->ring + (h & t->mask);
    uint64_t s = __atomic_load_n(t->seqp, __ATOMIC_RELAXED);
    __atomic_store_n(t->seqp, s + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&r->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    r->obj = (uint64_t)(uintptr_t)obj;
    r->site = (uint64_t)(uintptr_t)site;
    r->refcnt = refcnt;
    __atomic_store_n(&r->u.commit,
                     (uint64_t)(uint32_t)s | (uint64_t)(op & 0xff) << 32 |
                         (uint64_t)(uint8_t)(int8_t)delta << 40 | (uint64_t)t->serial << 48,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
}

/* No global seq: the record's seq is left 0 (measures the shared counter's load+store). */
static inline __attribute__((always_inline)) void rec_noseq(const void *obj,
                                                            const struct pyref_site *site,
                                                            int64_t refcnt, unsigned op,
                                                            int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    if (__builtin_expect(t == 0, 0)) {
        pyref_record_slow(obj, site, refcnt, op, delta);
        return;
    }
    if (__builtin_expect(t->busy != 0, 0)) {
        t->lost++;
        return;
    }
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head;
    struct pyref_record *r = t->ring + (h & t->mask);
    __atomic_store_n(&r->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    r->obj = (uint64_t)(uintptr_t)obj;
    r->site = (uint64_t)(uintptr_t)site;
    r->refcnt = refcnt;
    __atomic_store_n(&r->u.commit,
                     (uint64_t)(op & 0xff) << 32 | (uint64_t)(uint8_t)(int8_t)delta << 40 |
                         (uint64_t)t->serial << 48,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
}

/* No commit = 0 before the fields (a stopped reader could then see a record mixing two
 * writes: measures the invalidation store). */
static inline __attribute__((always_inline)) void rec_nozero(const void *obj,
                                                             const struct pyref_site *site,
                                                             int64_t refcnt, unsigned op,
                                                             int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    if (__builtin_expect(t == 0, 0)) {
        pyref_record_slow(obj, site, refcnt, op, delta);
        return;
    }
    if (__builtin_expect(t->busy != 0, 0)) {
        t->lost++;
        return;
    }
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head;
    struct pyref_record *r = t->ring + (h & t->mask);
    uint64_t s = __atomic_load_n(t->seqp, __ATOMIC_RELAXED);
    __atomic_store_n(t->seqp, s + 1, __ATOMIC_RELAXED);
    r->obj = (uint64_t)(uintptr_t)obj;
    r->site = (uint64_t)(uintptr_t)site;
    r->refcnt = refcnt;
    __atomic_store_n(&r->u.commit,
                     (uint64_t)(uint32_t)s | (uint64_t)(op & 0xff) << 32 |
                         (uint64_t)(uint8_t)(int8_t)delta << 40 | (uint64_t)t->serial << 48,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
}

/* Busy folded into head's low bit? Not format-compatible; instead: the guard kept, but
 * busy set by the same store that... (x86 has no cheaper form). This variant keeps every
 * store and only drops the two field loads that a per-thread "hot" copy in the descriptor
 * would save: ring and mask are read once per loop (hoisted by hand). It bounds what
 * caching the descriptor fields could win. */
static struct pyref_record *hoist_ring;
static uint64_t hoist_mask;
static inline __attribute__((always_inline)) void rec_hoisted(const void *obj,
                                                              const struct pyref_site *site,
                                                              int64_t refcnt, unsigned op,
                                                              int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    if (__builtin_expect(t->busy != 0, 0)) {
        t->lost++;
        return;
    }
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head;
    struct pyref_record *r = hoist_ring + (h & hoist_mask);
    uint64_t s = __atomic_load_n(t->seqp, __ATOMIC_RELAXED);
    __atomic_store_n(t->seqp, s + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&r->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    r->obj = (uint64_t)(uintptr_t)obj;
    r->site = (uint64_t)(uintptr_t)site;
    r->refcnt = refcnt;
    __atomic_store_n(&r->u.commit,
                     (uint64_t)(uint32_t)s | (uint64_t)(op & 0xff) << 32 |
                         (uint64_t)(uint8_t)(int8_t)delta << 40 | (uint64_t)t->serial << 48,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
}

/* Only the record's four stores (obj, site, refcnt, commit): no guard, no seq, no
 * invalidation, head still advanced. The floor for a 32-byte record in this layout. */
static inline __attribute__((always_inline)) void rec_floor(const void *obj,
                                                            const struct pyref_site *site,
                                                            int64_t refcnt, unsigned op,
                                                            int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    uint64_t h = t->head;
    struct pyref_record *r = t->ring + (h & t->mask);
    r->obj = (uint64_t)(uintptr_t)obj;
    r->site = (uint64_t)(uintptr_t)site;
    r->refcnt = refcnt;
    __atomic_store_n(&r->u.commit,
                     (uint64_t)(op & 0xff) << 32 | (uint64_t)(uint8_t)(int8_t)delta << 40 |
                         (uint64_t)t->serial << 48,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
}

/* ring.h's path plus a prefetch-for-write of the slot PYREF_PROTO_AHEAD records ahead:
 * the ring's lines are then owned before the record's stores reach them (hides the RFO of
 * a ring larger than L1/L2). Format unchanged. */
#ifndef PYREF_PROTO_AHEAD
#define PYREF_PROTO_AHEAD 32
#endif
static inline __attribute__((always_inline)) void rec_prefetch(const void *obj,
                                                               const struct pyref_site *site,
                                                               int64_t refcnt, unsigned op,
                                                               int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    if (__builtin_expect(t == 0, 0)) {
        pyref_record_slow(obj, site, refcnt, op, delta);
        return;
    }
    if (__builtin_expect(t->busy != 0, 0)) {
        t->lost++;
        return;
    }
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head;
    struct pyref_record *r = t->ring + (h & t->mask);
    __builtin_prefetch(t->ring + ((h + PYREF_PROTO_AHEAD) & t->mask), 1, 3);
    uint64_t s = __atomic_load_n(t->seqp, __ATOMIC_RELAXED);
    __atomic_store_n(t->seqp, s + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&r->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    r->obj = (uint64_t)(uintptr_t)obj;
    r->site = (uint64_t)(uintptr_t)site;
    r->refcnt = refcnt;
    __atomic_store_n(&r->u.commit,
                     (uint64_t)(uint32_t)s | (uint64_t)(op & 0xff) << 32 |
                         (uint64_t)(uint8_t)(int8_t)delta << 40 | (uint64_t)t->serial << 48,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
}

/* ring.h's path with the record's stores non-temporal (movnti): no read-for-ownership of
 * ring lines, two records combine into one full-line write. NT stores are weakly ordered
 * among themselves, so only a *stopped* reader (ptrace, core: the kernel entry drains the
 * write-combining buffers) still sees a prefix of program order; a live reader would not.
 * The slot is not read back, so nothing waits on the eviction. */
static inline __attribute__((always_inline)) void
rec_nt(const void *obj, const struct pyref_site *site, int64_t refcnt, unsigned op, int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    if (__builtin_expect(t == 0, 0)) {
        pyref_record_slow(obj, site, refcnt, op, delta);
        return;
    }
    if (__builtin_expect(t->busy != 0, 0)) {
        t->lost++;
        return;
    }
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head;
    struct pyref_record *r = t->ring + (h & t->mask);
    uint64_t s = __atomic_load_n(t->seqp, __ATOMIC_RELAXED);
    __atomic_store_n(t->seqp, s + 1, __ATOMIC_RELAXED);
    __builtin_ia32_movnti64((long long *)&r->u.commit, 0);
    __builtin_ia32_movnti64((long long *)&r->obj, (long long)(uintptr_t)obj);
    __builtin_ia32_movnti64((long long *)&r->site, (long long)(uintptr_t)site);
    __builtin_ia32_movnti64((long long *)&r->refcnt, refcnt);
    __builtin_ia32_movnti64((long long *)&r->u.commit,
                            (long long)((uint64_t)(uint32_t)s | (uint64_t)(op & 0xff) << 32 |
                                        (uint64_t)(uint8_t)(int8_t)delta << 40 |
                                        (uint64_t)t->serial << 48));
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
}

/* A proposal, format unchanged: (1) pyref_tls_thread never NULL — it starts at a
 * thread-local dummy descriptor with busy = 1, so one test (busy) sends both "no ring yet"
 * and "re-entered" to the out-of-line path, which registers the thread or counts `lost`
 * (and with PYREF=off the dummy stays: a record costs one load and one increment);
 * (2) a prefetch-for-write of the slot PYREF_PROTO_AHEAD records ahead. Same stores, same
 * order as ring.h. The out-of-line path is never taken here (the thread is registered). */
static __attribute__((noinline)) void proposed_slow(struct pyref_thread *t, const void *obj,
                                                    const struct pyref_site *site,
                                                    int64_t refcnt, unsigned op, int delta)
{
    (void)obj, (void)site, (void)refcnt, (void)op, (void)delta;
    t->lost++;
}
static inline __attribute__((always_inline)) void rec_proposed(const void *obj,
                                                               const struct pyref_site *site,
                                                               int64_t refcnt, unsigned op,
                                                               int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    if (__builtin_expect(t->busy != 0, 0)) {
        proposed_slow(t, obj, site, refcnt, op, delta);
        return;
    }
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head;
    struct pyref_record *r = t->ring + (h & t->mask);
    __builtin_prefetch(t->ring + ((h + PYREF_PROTO_AHEAD) & t->mask), 1, 3);
    uint64_t s = __atomic_load_n(t->seqp, __ATOMIC_RELAXED);
    __atomic_store_n(t->seqp, s + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&r->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    r->obj = (uint64_t)(uintptr_t)obj;
    r->site = (uint64_t)(uintptr_t)site;
    r->refcnt = refcnt;
    __atomic_store_n(&r->u.commit,
                     (uint64_t)(uint32_t)s | (uint64_t)(op & 0xff) << 32 |
                         (uint64_t)(uint8_t)(int8_t)delta << 40 | (uint64_t)t->serial << 48,
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
}

/* ---- the pair loop of micro_ext.c (INCREF a, DECREF the object incremented 4 iterations
 * earlier), as the shim expands it on 3.11, once per variant ----------------------------- */
#define PAIR_LOOP(NAME, RECORD)                                                                \
    static __attribute__((noinline)) void NAME(struct fake_obj **objs, long mask, long n)      \
    {                                                                                          \
        for (long i = 0; i < n; i++) {                                                         \
            struct fake_obj *a = objs[i & mask], *b = objs[(i + 4) & mask];                    \
            int64_t before = a->refcnt;                                                        \
            a->refcnt++;                                                                       \
            RECORD(a, &site_inc, before, PYREF_OP_INCREF, 1);                                  \
            BARRIER(a);                                                                        \
            before = b->refcnt;                                                                \
            RECORD(b, &site_dec, before, before == 1 ? PYREF_OP_DEALLOC : PYREF_OP_DECREF,     \
                   -1);                                                                        \
            if (--b->refcnt == 0)                                                              \
                abort();                                                                       \
        }                                                                                      \
    }

#define NO_RECORD(obj, site, refcnt, op, delta) ((void)(refcnt))
PAIR_LOOP(loop_untraced, NO_RECORD)
PAIR_LOOP(loop_ring_h, pyref_record)
PAIR_LOOP(loop_noguard, rec_noguard)
PAIR_LOOP(loop_noseq, rec_noseq)
PAIR_LOOP(loop_nozero, rec_nozero)
PAIR_LOOP(loop_hoisted, rec_hoisted)
PAIR_LOOP(loop_floor, rec_floor)
PAIR_LOOP(loop_prefetch, rec_prefetch)
PAIR_LOOP(loop_nt, rec_nt)
PAIR_LOOP(loop_proposed, rec_proposed)

/* PYREF=off as it could be: the thread's descriptor pointer aims at a thread-local dummy
 * with busy = 1, so pyref_record() drops each record in its guard branch (one TLS load, one
 * load, one thread-local increment) instead of calling pyref_record_slow() every time. */
static __thread struct pyref_thread off_dummy = {.busy = 1};
PAIR_LOOP(loop_ring_h_off, pyref_record) /* the loop the two PYREF=off variants run */
static __attribute__((noinline)) void loop_off_dummy(struct fake_obj **objs, long mask, long n)
{
    struct pyref_thread *saved = pyref_tls_thread;
    pyref_tls_thread = &off_dummy;
    loop_ring_h_off(objs, mask, n);
    pyref_tls_thread = saved;
}

/* PYREF=off as ring.c has it: no descriptor, so every record calls pyref_record_slow(),
 * which finds the disabled flag (here: an unregistered thread on an enabled ring is the
 * same call path up to the flag test, so the flag is set for the loop). */
static __attribute__((noinline)) void loop_off_slow(struct fake_obj **objs, long mask, long n)
{
    struct pyref_thread *saved = pyref_tls_thread;
    uint32_t flags = pyref_ring->flags;
    pyref_tls_thread = NULL;
    pyref_ring->flags |= PYREF_FLAG_DISABLED;
    loop_ring_h_off(objs, mask, n);
    pyref_ring->flags = flags;
    pyref_tls_thread = saved;
}

struct variant {
    const char *name;
    void (*fn)(struct fake_obj **, long, long);
    const char *fn_name;
    double ns[64];
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 10000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 9;
    const char *only = argc > 3 ? argv[3] : NULL; /* run just this loop_* (for callgrind) */
    if (rounds > 64)
        rounds = 64;
    static struct fake_obj pool[8];
    struct fake_obj *objs[8];
    for (int i = 0; i < 8; i++) {
        pool[i].refcnt = 2;
        objs[i] = &pool[i];
    }
    pyref_record(NULL, NULL, 0, PYREF_OP_INCREF, 0); /* register this thread */
    hoist_ring = pyref_tls_thread->ring;
    hoist_mask = pyref_tls_thread->mask;

    struct variant v[] = {
        {"untraced", loop_untraced, "loop_untraced", {0}},
        {"ring.h pyref_record", loop_ring_h, "loop_ring_h", {0}},
        {"- re-entry guard", loop_noguard, "loop_noguard", {0}},
        {"- global seq", loop_noseq, "loop_noseq", {0}},
        {"- commit=0 invalidation", loop_nozero, "loop_nozero", {0}},
        {"ring/mask hoisted", loop_hoisted, "loop_hoisted", {0}},
        {"only fields + commit + head", loop_floor, "loop_floor", {0}},
        {"ring.h + prefetchw ahead", loop_prefetch, "loop_prefetch", {0}},
        {"non-temporal record stores", loop_nt, "loop_nt", {0}},
        {"proposed: 1 guard test + prefetchw", loop_proposed, "loop_proposed", {0}},
        {"PYREF=off: slow call (ring.c)", loop_off_slow, "loop_off_slow", {0}},
        {"PYREF=off: busy dummy (idea)", loop_off_dummy, "loop_off_dummy", {0}},
    };
    int nv = sizeof v / sizeof v[0];
    if (only != NULL) {
        for (int k = 0; k < nv; k++)
            if (strcmp(v[k].fn_name, only) == 0)
                v[k].fn(objs, 7, n);
        return 0;
    }
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < nv; k++) {
            double t0 = now_ns();
            v[k].fn(objs, 7, n);
            v[k].ns[r] = (now_ns() - t0) / (2.0 * n);
        }
    }
    printf("capacity %u records; %ld pairs x %d rounds; median (min) ns per transition\n",
           pyref_ring->capacity, n, rounds);
    qsort(v[0].ns, rounds, sizeof(double), cmp_double);
    double base = v[0].ns[rounds / 2];
    for (int k = 0; k < nv; k++) {
        qsort(v[k].ns, rounds, sizeof(double), cmp_double);
        printf("  %-34s %6.2f (%5.2f)   +%5.2f over untraced\n", v[k].name, v[k].ns[rounds / 2],
               v[k].ns[0], v[k].ns[rounds / 2] - base);
    }
    return 0;
}
