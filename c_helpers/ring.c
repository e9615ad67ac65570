/*
 * ring.c — the pyref runtime: creates the process's ring header at load time, registers
 * threads on their first record, and keeps the ring consistent across thread exit and
 * fork(). The per-record fast path is inline in include/pyref/ring.h; this file holds only
 * what runs once per process or once per thread.
 *
 * Layout and protocol: docs/ring-format.md. Nothing here calls into Python: the runtime is
 * shared by extensions built against any interpreter version.
 */
#define _GNU_SOURCE
#include "pyref/ring.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PYREF_MIN_RECORDS (1u << 8)
#define PYREF_MAX_RECORDS (1u << 26)
#define PYREF_MAX_THREADS_LIMIT 4096

const char pyref_version[] = "0.1.0";

/* Exported (and in .dynsym, so it survives strip): readers find the ring through it. */
struct pyref_ring_header *pyref_ring;

struct pyref_thread pyref_thread_none = {.busy = 1};

__thread struct pyref_thread *pyref_tls_thread
    __attribute__((tls_model("initial-exec"))) = &pyref_thread_none;

/* Set once at init when PYREF=off: the slow path then returns at once. */
static int pyref_off;

/* Set while this thread is inside the slow path, so a signal handler's record cannot
 * re-enter registration. */
static __thread int pyref_tls_in_slow __attribute__((tls_model("initial-exec")));

static pthread_key_t pyref_exit_key;
static pthread_once_t pyref_once = PTHREAD_ONCE_INIT;

/* Static layout checks: the C structs are the spec's tables. */
_Static_assert(sizeof(struct pyref_record) == PYREF_RECORD_SIZE, "record size");
_Static_assert(offsetof(struct pyref_record, u.c.seq) == 24, "seq offset");
_Static_assert(offsetof(struct pyref_record, u.c.op) == 28, "op offset");
_Static_assert(offsetof(struct pyref_record, u.c.delta) == 29, "delta offset");
_Static_assert(offsetof(struct pyref_record, u.c.tid) == 30, "tid offset");
_Static_assert(sizeof(struct pyref_thread) == 64, "thread descriptor size");
_Static_assert(offsetof(struct pyref_ring_header, seq) == 128, "seq on its own line");
_Static_assert(offsetof(struct pyref_ring_header, threads) == PYREF_THREAD_TABLE_OFF,
               "thread table offset");
_Static_assert(sizeof(struct pyref_site) == 32, "site size");

/* Parses an unsigned decimal environment variable. Returns `dflt` when unset; when set but
 * not a number within [lo, hi] (and a power of two if `pow2`), prints one line on stderr
 * and returns `dflt`. Called once, at load. */
static unsigned long env_number(const char *name, unsigned long dflt, unsigned long lo,
                                unsigned long hi, int pow2)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return dflt;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi || (pow2 && (v & (v - 1)) != 0)) {
        fprintf(stderr, "pyref: ignoring %s=%s (want %s%lu..%lu); using %lu\n", name, s,
                pow2 ? "a power of two in " : "", lo, hi, dflt);
        return dflt;
    }
    return v;
}

static void *map_anonymous(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
/* Where headers go: the gap below a non-PIE executable's 0x400000 (a PIE one and the mmap
 * area are far above). */
#define PYREF_HEADER_LOW 0x100000u
#define PYREF_HEADER_LOW_END 0x400000u

/* Maps `size` bytes for a ring header as low in the address space as it can: cores are
 * written in address order and the header is what a reader needs first, so a core cut at
 * a size limit (systemd-coredump, ulimit -c) keeps it while it loses the rings and
 * libraries mapped high. Tries page-aligned addresses from PYREF_HEADER_LOW up (one per
 * statically linked runtime in the process) without replacing any mapping; elsewhere
 * (that range taken or refused: a sanitizer, mmap_min_addr) the kernel's choice, as any
 * anonymous mapping. Returns NULL when no memory can be had. */
static void *map_header(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = (size + page - 1) / page * page;
    for (uintptr_t a = PYREF_HEADER_LOW; a + len <= PYREF_HEADER_LOW_END; a += len) {
        void *p = mmap((void *)a, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == (void *)a)
            return p;
        if (p != MAP_FAILED) { /* a kernel before 4.17 took the flag for a hint */
            munmap(p, size);
            break;
        }
        if (errno != EEXIST)
            break;
    }
    return map_anonymous(size);
}

static void thread_exited(void *arg)
{
    struct pyref_thread *t = (struct pyref_thread *)arg;
    pyref_tls_thread = &pyref_thread_none;
    __atomic_store_n(&t->state, PYREF_THREAD_EXITED, __ATOMIC_RELEASE);
}

static void fork_child(void)
{
    struct pyref_ring_header *h = pyref_ring;
    if (h == NULL)
        return;
    uint32_t parent = h->pid;
    h->pid = (uint32_t)getpid();
    h->forks++;
    struct pyref_thread *self = pyref_tls_thread;
    if (self == &pyref_thread_none)
        self = NULL;
    for (uint32_t i = 0; i < h->max_threads; i++) {
        struct pyref_thread *t = &h->threads[i];
        if (t != self && t->state == PYREF_THREAD_LIVE)
            t->state = PYREF_THREAD_EXITED;
    }
    if (self != NULL) {
        self->os_tid = (uint64_t)syscall(SYS_gettid);
        self->busy = 0; /* the child starts outside any record */
        /* obj carries the parent's pid, written before the commit like any field */
        pyref_record((const void *)(uintptr_t)parent, NULL, (int64_t)getpid(), PYREF_OP_FORK,
                     0);
    }
}

/* Creates the header. Runs once (pthread_once from the constructor or the slow path). */
static void ring_init(void)
{
    const char *mode = getenv("PYREF");
    unsigned long cap = env_number("PYREF_RING_RECORDS", PYREF_DEFAULT_RECORDS,
                                   PYREF_MIN_RECORDS, PYREF_MAX_RECORDS, 1);
    unsigned long nthreads = env_number("PYREF_RING_THREADS", PYREF_DEFAULT_THREADS, 1,
                                        PYREF_MAX_THREADS_LIMIT, 0);
    size_t size = PYREF_THREAD_TABLE_OFF + nthreads * sizeof(struct pyref_thread);
    struct pyref_ring_header *h = (struct pyref_ring_header *)map_header(size);
    if (h == NULL)
        return; /* every record will be counted nowhere: there is no header to count in */

    h->version = PYREF_FORMAT_VERSION;
    h->header_size = (uint32_t)size;
    h->record_size = PYREF_RECORD_SIZE;
    h->capacity = (uint32_t)cap;
    h->word_size = (uint8_t)sizeof(void *);
    h->byte_order = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 1 : 2;
    h->field_count = 8;
    h->pid = (uint32_t)getpid();
    static const uint8_t fields[8][2] = {{0, 8},  {8, 8},  {16, 8}, {24, 4},
                                         {28, 1}, {29, 1}, {30, 2}, {24, 8}};
    memcpy(h->fields, fields, sizeof fields);
    h->thread_table_off = PYREF_THREAD_TABLE_OFF;
    h->thread_desc_size = sizeof(struct pyref_thread);
    h->max_threads = (uint32_t)nthreads;
    if (mode != NULL && strcmp(mode, "off") == 0) {
        h->flags |= PYREF_FLAG_DISABLED;
        pyref_off = 1;
        /* threads without a descriptor (all of them, now) drop records inline */
        __atomic_store_n(&pyref_thread_none.busy, PYREF_BUSY_OFF, __ATOMIC_RELAXED);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    h->init_time_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;

    pthread_key_create(&pyref_exit_key, thread_exited);
    pthread_atfork(NULL, NULL, fork_child);

    /* The magic goes last, after everything above is visible: a scan never matches a
     * half-built header. Built from two halves so the constant is not one literal. */
    uint64_t magic = ((uint64_t)0x474E5246u << 32) | 0x45525950u;
    __atomic_store_n(&h->magic, magic, __ATOMIC_RELEASE);
    __atomic_store_n(&pyref_ring, h, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void pyref_constructor(void)
{
    pthread_once(&pyref_once, ring_init);
}

/* A traced extension's constructor (the shim's pyref_hooks.h) runs before this file's when
 * libpyref.a is linked into the extension; it creates the ring set first through this. */
void pyref_ring_init(void)
{
    pthread_once(&pyref_once, ring_init);
}

void pyref_hooks_set(uint32_t bits, uint32_t py_version)
{
    pyref_ring_init();
    struct pyref_ring_header *h = __atomic_load_n(&pyref_ring, __ATOMIC_ACQUIRE);
    if (h == NULL)
        return;
    __atomic_or_fetch(&h->hooks, bits, __ATOMIC_RELAXED);
    if (py_version != 0)
        h->py_version = py_version;
}

/* Claims a descriptor for the calling thread: a free one, else the exited one with the
 * fewest records (its history is the least to lose). Returns NULL if all are live or the
 * ring memory cannot be mapped. */
static struct pyref_thread *thread_register(struct pyref_ring_header *h)
{
    struct pyref_thread *t = NULL;
    for (uint32_t i = 0; i < h->max_threads && t == NULL; i++) {
        uint32_t expect = PYREF_THREAD_FREE;
        if (__atomic_compare_exchange_n(&h->threads[i].state, &expect, PYREF_THREAD_LIVE, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            t = &h->threads[i];
    }
    while (t == NULL) { /* rescan when another thread claims our pick first */
        struct pyref_thread *pick = NULL;
        for (uint32_t i = 0; i < h->max_threads; i++) {
            struct pyref_thread *e = &h->threads[i];
            if (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) == PYREF_THREAD_EXITED &&
                (pick == NULL || e->head < pick->head))
                pick = e;
        }
        if (pick == NULL)
            break;
        uint32_t expect = PYREF_THREAD_EXITED;
        if (__atomic_compare_exchange_n(&pick->state, &expect, PYREF_THREAD_LIVE, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
            t = pick;
    }
    if (t == NULL)
        return NULL;
    if (t->ring == NULL) {
        struct pyref_record *ring = (struct pyref_record *)map_anonymous(
            (size_t)h->capacity * sizeof(struct pyref_record));
        if (ring == NULL) {
            __atomic_store_n(&t->state, PYREF_THREAD_FREE, __ATOMIC_RELEASE);
            return NULL;
        }
        t->mask = h->capacity - 1;
        t->seqp = &h->seq;
        /* last: a reader that sees the ring (a core taken now, a live reader) sees mask
         * and seqp set too */
        __atomic_store_n(&t->ring, ring, __ATOMIC_RELEASE);
    }
    t->os_tid = (uint64_t)syscall(SYS_gettid);
    t->busy = 0; /* lost is kept, like head: readers sum it over descriptors */
    t->serial = (uint16_t)(__atomic_add_fetch(&h->threads_registered, 1, __ATOMIC_RELAXED));
    pthread_setspecific(pyref_exit_key, t);
    return t;
}

/* The part of pyref_record_slow() that registers the thread. Out of line so that the
 * frequent cases (PYREF=off, a re-entered record) return without its stack frame. */
static __attribute__((noinline)) int record_registering(const void *obj,
                                                         const struct pyref_site *site,
                                                         int64_t refcnt, unsigned op,
                                                         int delta)
{
    struct pyref_thread *t;
    pthread_once(&pyref_once, ring_init);
    struct pyref_ring_header *h = __atomic_load_n(&pyref_ring, __ATOMIC_ACQUIRE);
    if (h == NULL || (h->flags & PYREF_FLAG_DISABLED))
        return 0;
    if (pyref_tls_in_slow) {
        __atomic_add_fetch(&h->lost_nothread, 1, __ATOMIC_RELAXED);
        return 0;
    }
    pyref_tls_in_slow = 1;
    PYREF__SIGNAL_FENCE();
    if (pyref_tls_thread == &pyref_thread_none) {
        t = thread_register(h);
        if (t != NULL)
            pyref_tls_thread = t;
    }
    PYREF__SIGNAL_FENCE();
    pyref_tls_in_slow = 0;
    if (pyref_tls_thread == &pyref_thread_none) {
        __atomic_add_fetch(&h->lost_nothread, 1, __ATOMIC_RELAXED);
        return 0;
    }
    return pyref_record(obj, site, refcnt, op, delta);
}

int pyref_record_slow(const void *obj, const struct pyref_site *site, int64_t refcnt,
                      unsigned op, int delta)
{
    struct pyref_thread *t = pyref_tls_thread;
    if (t != &pyref_thread_none) {
        t->lost++; /* a signal handler's record inside one of this thread's records */
        return 0;
    }
    if (pyref_off)
        return 0;
    return record_registering(obj, site, refcnt, op, delta);
}

int pyref_record_pair_slow(const void *obj, const struct pyref_site *site, int64_t refcnt,
                           unsigned op, int delta, const void *aux_obj, uint64_t aux_kind,
                           int64_t aux_value)
{
    struct pyref_thread *t0 = pyref_tls_thread;
    if (!pyref_record_slow(obj, site, refcnt, op, delta)) {
        if (t0 != &pyref_thread_none)
            t0->lost++; /* re-entered: the origin was dropped, and so is its AUX */
        return 0;   /* (off, or no descriptor: nothing is written, nor counted twice) */
    }
    pyref_record_aux(aux_obj, aux_kind, aux_value);
    return 1;
}

void pyref_record_aux(const void *obj, uint64_t kind, int64_t value)
{
    struct pyref_thread *t = pyref_tls_thread;
    if (t->head == 0)
        return; /* no descriptor or no previous record on this thread: nothing to attach to */
    if (t->busy) {
        t->lost++; /* the re-entry guard, as in pyref_record() */
        return;
    }
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head;
    uint32_t prev_seq = t->ring[(h - 1) & t->mask].u.c.seq;
    struct pyref_record *r = t->ring + (h & t->mask);
    __atomic_store_n(&r->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    PYREF__FIELD_STORE(r->obj, (uint64_t)(uintptr_t)obj);
    PYREF__FIELD_STORE(r->site, kind);
    PYREF__FIELD_STORE(r->refcnt, value);
    __atomic_store_n(&r->u.commit,
                     PYREF__COMMIT(prev_seq, PYREF_OP_AUX, 0, (uint64_t)t->serial << 48),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&t->head, h + 1, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
}

/* Bytes [16 k, 16 k + 16) of a label of `len` bytes as the two words of an AUX TEXT record
 * (obj, refcnt), zero-padded past the end. */
static void mark_text_words(const char *label, uint32_t len, uint32_t k, uint64_t *lo,
                            uint64_t *hi)
{
    unsigned char b[16] = {0};
    for (uint32_t j = 0; j < 16 && 16 * k + j < len; j++)
        b[j] = (unsigned char)label[16 * k + j];
    memcpy(lo, b, 8);
    memcpy(hi, b + 8, 8);
}

void pyref_mark(const char *label)
{
    if (label == NULL)
        label = "";
    size_t full = strlen(label);
    uint32_t len = full > PYREF_MARK_MAX ? PYREF_MARK_MAX : (uint32_t)full;
    uint32_t ntext = (len + 15) / 16;
    struct pyref_thread *t = pyref_tls_thread;
    if (t->busy != 0) {
        if (t->busy == PYREF_BUSY_OFF)
            return;
        if (t != &pyref_thread_none) {
            t->lost += 1 + ntext; /* the re-entry guard, as in pyref_record() */
            return;
        }
        /* the thread's first record: register it through the slow path (which writes the
         * MARK), then the text records one by one; nothing else runs on this thread
         * between them but a signal handler, whose records would only cut the label */
        if (!pyref_record_slow((const void *)(uintptr_t)len, NULL, (int64_t)full,
                               PYREF_OP_MARK, 0))
            return;
        t = pyref_tls_thread;
        for (uint32_t k = 0; k < ntext; k++) {
            uint64_t lo, hi;
            mark_text_words(label, len, k, &lo, &hi);
            pyref_record_aux((const void *)(uintptr_t)lo, PYREF_AUX_TEXT, (int64_t)hi);
        }
        return;
    }
    t->busy = 1;
    PYREF__SIGNAL_FENCE();
    uint64_t h = t->head, mask = t->mask;
    uint64_t s = __atomic_load_n(t->seqp, __ATOMIC_RELAXED);
    __atomic_store_n(t->seqp, s + 1, __ATOMIC_RELAXED);
    uint64_t tidbits = (uint64_t)t->serial << 48;
    struct pyref_record *r = t->ring + (h & mask);
    __atomic_store_n(&r->u.commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    PYREF__FIELD_STORE(r->obj, (uint64_t)len);
    PYREF__FIELD_STORE(r->site, (uint64_t)0);
    PYREF__FIELD_STORE(r->refcnt, (int64_t)full);
    __atomic_store_n(&r->u.commit, PYREF__COMMIT(s, PYREF_OP_MARK, 0, tidbits),
                     __ATOMIC_RELEASE);
    for (uint32_t k = 0; k < ntext; k++) { /* one slot after the other, as in a pair */
        struct pyref_record *a = t->ring + ((h + 1 + k) & mask);
        uint64_t lo, hi;
        mark_text_words(label, len, k, &lo, &hi);
        __atomic_store_n(&a->u.commit, 0, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        PYREF__FIELD_STORE(a->obj, lo);
        PYREF__FIELD_STORE(a->site, (uint64_t)PYREF_AUX_TEXT);
        PYREF__FIELD_STORE(a->refcnt, (int64_t)hi);
        __atomic_store_n(&a->u.commit, PYREF__COMMIT(s, PYREF_OP_AUX, 0, tidbits),
                         __ATOMIC_RELEASE);
    }
    __atomic_store_n(&t->head, h + 1 + ntext, __ATOMIC_RELEASE);
    PYREF__SIGNAL_FENCE();
    t->busy = 0;
}
