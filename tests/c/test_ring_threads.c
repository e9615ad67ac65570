/*
 * test_ring_threads.c — the ring with several threads.
 *
 * writers: 4 threads record at once.
 *   - serialised by a mutex (standing in for the GIL): each thread's ring holds exactly its
 *     own records in order, and the seqs of all records are unique and cover the header's
 *     seq exactly; meanwhile a reader thread samples the live rings and every committed slot
 *     it reads (commit word unchanged around the read) has all its fields from one write;
 *   - with no mutex: every slot of every window is still well formed (its fields come from
 *     one write of its own thread, at its own position), though seqs may repeat.
 * reuse: with PYREF_RING_THREADS=2, thread exit (state EXITED, history kept), reuse of the
 *   exited descriptor with the fewest records (serial changes, head and lost continue, the
 *   old records keep their old tid), and "no descriptor left" (lost_nothread).
 */
#include "check.h"

#include <semaphore.h>

#define WRITERS 4

/* ---- records that say who wrote them ------------------------------------------------- */
/* Writer w's i-th record; every field is a function of (w, i), so a slot whose fields
 * came from two writes is caught. */
static struct want writer_record(unsigned w, uint64_t i)
{
    struct want r;
    r.obj = (uint64_t)(w + 1) << 40 | i;
    r.site = r.obj * 0x9e3779b97f4a7c15ull;
    r.refcnt = -(int64_t)(r.obj ^ 0x5555);
    r.op = (uint8_t)(1 + (i + w) % 3);
    r.delta = (int8_t)(i * 7 + w);
    r.seq = 0;
    r.tid = 0;
    return r;
}

/* Checks that r is writer_record(w, i) for the (w, i) its obj names, that i sits at this
 * slot, and (if tid >= 0) that it carries that tid. Returns 1 if so; else describes it. */
static int well_formed(const struct want *g, uint64_t slot, uint64_t mask, int tid,
                       unsigned *w_out, uint64_t *i_out, char *why, size_t n)
{
    unsigned w = (unsigned)(g->obj >> 40) - 1;
    uint64_t i = g->obj & ((1ull << 40) - 1);
    struct want e = writer_record(w, i);
    if (w < WRITERS && (i & mask) == slot && g->site == e.site && g->refcnt == e.refcnt &&
        g->op == e.op && g->delta == e.delta && (tid < 0 || g->tid == tid)) {
        *w_out = w;
        *i_out = i;
        return 1;
    }
    snprintf(why, n, "slot %llu: obj %#llx site %#llx refcnt %lld op %u delta %d tid %u",
             (unsigned long long)slot, (unsigned long long)g->obj, (unsigned long long)g->site,
             (long long)g->refcnt, g->op, g->delta, g->tid);
    return 0;
}

/* ---- writers ------------------------------------------------------------------------- */
struct writer {
    unsigned index;
    uint64_t n;
    pthread_mutex_t *gil; /* NULL: no serialisation */
    pthread_barrier_t *start;
    struct pyref_thread *t;
};

static void *writer_main(void *arg)
{
    struct writer *wr = arg;
    pthread_barrier_wait(wr->start);
    for (uint64_t i = 0; i < wr->n; i++) {
        struct want r = writer_record(wr->index, i);
        if (wr->gil)
            pthread_mutex_lock(wr->gil);
        pyref_record((void *)(uintptr_t)r.obj, (const struct pyref_site *)(uintptr_t)r.site,
                     r.refcnt, r.op, r.delta);
        if (wr->gil)
            pthread_mutex_unlock(wr->gil);
    }
    wr->t = test_thread();
    return NULL;
}

/* A reader of the live rings, as a debugger attached to a running process would be if it
 * did not stop it: it re-reads the commit word after the fields (seqlock style). */
struct live_reader {
    volatile int stop;
    uint64_t consistent, inconsistent, torn;
    char why[300];
};

static void *reader_main(void *arg)
{
    struct live_reader *lr = arg;
    struct pyref_ring_header *h = pyref_ring;
    uint64_t k = 0;
    for (int last = 0; !last;) {
        last = lr->stop; /* one more pass after the writers are done: never zero reads */
        for (uint32_t d = 0; d < h->max_threads; d++) {
            struct pyref_thread *t = &h->threads[d];
            struct pyref_record *ring = __atomic_load_n(&t->ring, __ATOMIC_ACQUIRE);
            uint64_t head = __atomic_load_n(&t->head, __ATOMIC_ACQUIRE);
            if (ring == NULL || head == 0)
                continue;
            /* The slot being overwritten now, or its neighbours. */
            uint64_t mask = h->capacity - 1, p = head + (k++ % 3) - 1;
            struct pyref_record *r = &ring[p & mask];
            uint64_t c1 = __atomic_load_n(&r->u.commit, __ATOMIC_ACQUIRE);
            struct want g;
            g.obj = __atomic_load_n(&r->obj, __ATOMIC_RELAXED);
            g.site = __atomic_load_n(&r->site, __ATOMIC_RELAXED);
            g.refcnt = __atomic_load_n(&r->refcnt, __ATOMIC_RELAXED);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            uint64_t c2 = __atomic_load_n(&r->u.commit, __ATOMIC_RELAXED);
            if (c1 == 0 || c1 != c2) {
                lr->torn++;
                continue;
            }
            g.op = (uint8_t)(c1 >> 32);
            g.delta = (int8_t)(c1 >> 40);
            g.tid = (uint16_t)(c1 >> 48);
            unsigned w;
            uint64_t i;
            if (well_formed(&g, p & mask, mask, -1, &w, &i, lr->why, sizeof lr->why))
                lr->consistent++;
            else
                lr->inconsistent++;
        }
    }
    return NULL;
}

/* Runs WRITERS threads of n records each (serialised by a mutex if `gil`), with a live
 * reader when `reader`, and checks every descriptor's window afterwards. */
static void writers(uint64_t n, int gil, int reader)
{
    struct pyref_ring_header *h = pyref_ring;
    uint64_t cap = h->capacity, seq0 = h->seq;
    pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, WRITERS);
    struct writer wr[WRITERS];
    pthread_t th[WRITERS], rth;
    struct live_reader lr = {0};
    if (reader)
        pthread_create(&rth, NULL, reader_main, &lr);
    for (unsigned w = 0; w < WRITERS; w++) {
        wr[w] = (struct writer){w, n, gil ? &mutex : NULL, &start, NULL};
        pthread_create(&th[w], NULL, writer_main, &wr[w]);
    }
    for (unsigned w = 0; w < WRITERS; w++)
        pthread_join(th[w], NULL);
    if (reader) {
        lr.stop = 1;
        pthread_join(rth, NULL);
        if (getenv("PYREF_TEST_VERBOSE"))
            fprintf(stderr, "live reader: %llu consistent, %llu torn or changing\n",
                    (unsigned long long)lr.consistent, (unsigned long long)lr.torn);
        CHECK(lr.inconsistent == 0 && lr.consistent > 0,
              "live reader: %llu consistent, %llu mixed, %llu torn reads; first mixed: %s",
              (unsigned long long)lr.consistent, (unsigned long long)lr.inconsistent,
              (unsigned long long)lr.torn, lr.why);
    }
    pthread_barrier_destroy(&start);

    uint64_t total = WRITERS * n, first = n > cap ? n - cap : 0;
    uint8_t *seen = calloc(total, 1); /* gil: which seqs (relative to seq0) occur */
    uint64_t dup = 0, out_of_range = 0;
    for (unsigned w = 0; w < WRITERS; w++) {
        struct pyref_thread *t = wr[w].t;
        CHECK(t != NULL && t->head == n && t->state == PYREF_THREAD_EXITED,
              "writer %u: descriptor %ld head %llu state %u", w, thread_index(t),
              (unsigned long long)(t ? t->head : 0), t ? t->state : 0);
        if (t == NULL)
            continue;
        uint64_t bad = 0, prev_seq = 0;
        char why[400] = "";
        for (uint64_t p = first; p < n; p++) {
            struct want g = record_read(&t->ring[p & t->mask]);
            unsigned gw;
            uint64_t gi;
            char one[300];
            if (!well_formed(&g, p & t->mask, t->mask, t->serial, &gw, &gi, one, sizeof one) ||
                gw != w || gi != p) {
                if (bad++ == 0)
                    snprintf(why, sizeof why, "position %llu: %s", (unsigned long long)p, one);
                continue;
            }
            if (!gil)
                continue;
            /* Under the mutex a thread's seqs increase along its ring, and no two records
             * of any thread share one. */
            uint64_t rel = (uint32_t)(g.seq - (uint32_t)seq0);
            if (p > first && rel <= prev_seq && bad++ == 0)
                snprintf(why, sizeof why, "position %llu: seq %llu after %llu",
                         (unsigned long long)p, (unsigned long long)rel,
                         (unsigned long long)prev_seq);
            prev_seq = rel;
            if (rel >= total)
                out_of_range++;
            else if (seen[rel]++)
                dup++;
        }
        CHECK(bad == 0, "%s, writer %u: %llu bad records; first: %s",
              gil ? "mutex" : "no mutex", w, (unsigned long long)bad, why);
    }
    if (gil) {
        CHECK_EQ_U64(h->seq, seq0 + total, "header seq after serialised writers");
        CHECK(dup == 0 && out_of_range == 0, "%llu duplicate and %llu out-of-range seqs",
              (unsigned long long)dup, (unsigned long long)out_of_range);
    } else {
        CHECK(h->seq > seq0 && h->seq <= seq0 + total,
              "header seq advanced by %llu for %llu unserialised records",
              (unsigned long long)(h->seq - seq0), (unsigned long long)total);
    }
    free(seen);
}

static void child_writers(void)
{
    uint64_t cap = pyref_ring->capacity;
    writers(cap - 1000, 1, 0);    /* every record still in its ring: the seqs are all there */
    writers(100 * cap + 5, 1, 1); /* long enough for the reader to meet every state */
    writers(100 * cap + 5, 0, 1);
}

/* ---- exit and reuse ------------------------------------------------------------------ */
struct life {
    uint64_t n;      /* records to write */
    int busy_drops;  /* records then dropped through the re-entry guard */
    unsigned tag;    /* record i's obj is tag << 20 | i */
    sem_t *recorded; /* if set: posted after recording, then wait for `release` */
    sem_t *release;
    struct pyref_thread *t; /* out: the thread's descriptor */
    uint64_t tid;           /* out: its kernel tid */
    uint32_t state_alive;   /* out: the descriptor's state while the thread lived */
};

static void *life_main(void *arg)
{
    struct life *l = arg;
    for (uint64_t i = 0; i < l->n; i++)
        pyref_record((void *)(uintptr_t)(l->tag << 20 | i), NULL, 1, PYREF_OP_INCREF, 1);
    l->t = test_thread();
    l->tid = test_gettid();
    if (l->t) {
        l->state_alive = l->t->state;
        l->t->busy = 1;
        for (int i = 0; i < l->busy_drops; i++)
            pyref_record(NULL, NULL, 0, PYREF_OP_DECREF, -1);
        l->t->busy = 0;
    }
    if (l->recorded) {
        sem_post(l->recorded);
        sem_wait(l->release);
    }
    return NULL;
}

/* Starts a thread running life_main(l) that stays alive after recording; returns once
 * it has recorded. */
static pthread_t start_held(struct life *l, sem_t *recorded, sem_t *release)
{
    pthread_t th;
    l->recorded = recorded;
    l->release = release;
    pthread_create(&th, NULL, life_main, l);
    sem_wait(recorded);
    return th;
}

/* Checks that positions [from, to) of t hold thread `tag`'s records i = p - base with
 * registration serial `serial`. */
static void check_span(const struct pyref_thread *t, uint64_t from, uint64_t to, uint64_t base,
                       unsigned tag, uint16_t serial, const char *what)
{
    uint64_t bad = 0;
    for (uint64_t p = from; p < to; p++) {
        const struct pyref_record *r = &t->ring[p & t->mask];
        bad += r->obj != (tag << 20 | (p - base)) || r->u.c.tid != serial ||
               r->u.c.op != PYREF_OP_INCREF;
    }
    CHECK(bad == 0, "%s: %llu of positions %llu..%llu are not thread %u's (serial %u)", what,
          (unsigned long long)bad, (unsigned long long)from, (unsigned long long)to, tag,
          serial);
}

static void child_reuse(void)
{
    struct pyref_ring_header *h = pyref_ring;
    CHECK(h->max_threads == 2, "max_threads %u, want 2", h->max_threads);
    if (h->max_threads != 2)
        return;
    struct pyref_thread *d0 = &h->threads[0], *d1 = &h->threads[1];

    /* A and B take the two free descriptors and exit; their history stays. */
    struct life a = {.n = 10, .busy_drops = 2, .tag = 1};
    run_thread(life_main, &a);
    CHECK(a.t == d0 && a.state_alive == PYREF_THREAD_LIVE, "A: descriptor %ld state %u",
          thread_index(a.t), a.state_alive);
    CHECK(d0->state == PYREF_THREAD_EXITED && d0->head == 10 && d0->serial == 1 &&
              d0->os_tid == a.tid && d0->lost == 2 && d0->busy == 0,
          "A exited: state %u head %llu serial %u lost %llu", d0->state,
          (unsigned long long)d0->head, d0->serial, (unsigned long long)d0->lost);
    struct life b = {.n = 300, .tag = 2};
    run_thread(life_main, &b);
    CHECK(b.t == d1 && d1->state == PYREF_THREAD_EXITED && d1->head == 300 && d1->serial == 2,
          "B: descriptor %ld state %u head %llu serial %u", thread_index(b.t), d1->state,
          (unsigned long long)d1->head, d1->serial);
    struct pyref_record *ring0 = d0->ring;

    /* C: no free descriptor; it takes the exited one with the fewest records (A's: 10 <
     * 300), keeping its ring, head and lost; A's records keep serial 1. */
    struct life c = {.n = 5, .tag = 3};
    run_thread(life_main, &c);
    CHECK(c.t == d0 && c.state_alive == PYREF_THREAD_LIVE, "C took descriptor %ld, want 0",
          thread_index(c.t));
    CHECK(d0->ring == ring0 && d0->head == 15 && d0->serial == 3 && d0->os_tid == c.tid &&
              d0->lost == 2 && d0->state == PYREF_THREAD_EXITED,
          "C on A's descriptor: ring kept %d head %llu serial %u lost %llu state %u",
          d0->ring == ring0, (unsigned long long)d0->head, d0->serial,
          (unsigned long long)d0->lost, d0->state);
    CHECK_EQ_U64(h->threads_registered, 3, "threads_registered");
    check_span(d0, 0, 10, 0, 1, 1, "A's records after reuse");
    check_span(d0, 10, 15, 10, 3, 3, "C's records");

    /* D and E hold both descriptors: F finds none, so its records count in lost_nothread
     * and it stays unregistered; once D has exited, F2 gets D's descriptor. */
    sem_t rec, rel_d, rel_e;
    sem_init(&rec, 0, 0);
    sem_init(&rel_d, 0, 0);
    sem_init(&rel_e, 0, 0);
    struct life d = {.n = 1, .tag = 4}, e = {.n = 1, .tag = 5};
    pthread_t td = start_held(&d, &rec, &rel_d);
    pthread_t te = start_held(&e, &rec, &rel_e);
    CHECK(d.t == d0 && e.t == d1, "D took %ld (want 0: 15 records < 300), E took %ld",
          thread_index(d.t), thread_index(e.t));
    uint64_t lost0 = h->lost_nothread, reg0 = h->threads_registered;
    struct life f = {.n = 3, .tag = 6};
    run_thread(life_main, &f);
    CHECK(f.t == NULL && h->lost_nothread == lost0 + 3 && h->threads_registered == reg0,
          "F with no descriptor left: descriptor %ld, lost_nothread +%llu (want +3)",
          thread_index(f.t), (unsigned long long)(h->lost_nothread - lost0));
    sem_post(&rel_d);
    pthread_join(td, NULL);
    struct life f2 = {.n = 3, .tag = 8};
    run_thread(life_main, &f2);
    CHECK(f2.t == d0 && h->lost_nothread == lost0 + 3 && d0->head == 19,
          "F2 after D exited: descriptor %ld head %llu", thread_index(f2.t),
          (unsigned long long)d0->head);
    sem_post(&rel_e);
    pthread_join(te, NULL);
    CHECK(d0->state == PYREF_THREAD_EXITED && d1->state == PYREF_THREAD_EXITED,
          "states after all exited: %u %u", d0->state, d1->state);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "writers") == 0)
            child_writers();
        else if (strcmp(argv[1], "reuse") == 0)
            child_reuse();
        return check_done();
    }
    const char *wenv[] = {"PYREF_RING_RECORDS=4096", "PYREF_RING_THREADS", "PYREF", NULL};
    spawn_self("writers", wenv, NULL, 0);
    const char *renv[] = {"PYREF_RING_RECORDS=256", "PYREF_RING_THREADS=2", "PYREF", NULL};
    spawn_self("reuse", renv, NULL, 0);
    return check_done();
}
