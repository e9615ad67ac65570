/*
 * test_ring_model.c — the ring against a trivial reference model (SQLite's bitvec test
 * style). Random sequences of operations — single records, bursts that wrap the ring, AUX
 * records, origin + AUX pairs written as one (pyref_record_pair), records dropped by the
 * re-entry guard, thread creation and exit — run on real threads, one at a time, while a
 * model applies the same operations to plain arrays: per descriptor its state, head,
 * serial, lost and every record it should hold. After every
 * operation every descriptor and every slot of every window (and the untouched slots past
 * it) is compared with the model, with the header's seq, threads_registered and
 * lost_nothread.
 *
 * Runs with PYREF_RING_RECORDS=256 and PYREF_RING_THREADS=4 (it re-runs itself so), with up
 * to 6 live threads: descriptor reuse and "no slot left" happen often. The model encodes the
 * runtime's rules: a thread registers on its first record, taking the first free descriptor,
 * else the exited one with the fewest records (keeping its head), else the record is lost
 * (lost_nothread); AUX needs a previous record on the thread and takes its seq.
 */
#include "check.h"

#define CAP 256
#define MAXT 4
#define ACTORS 6
#define OPS_PER_SEED 3000
#define SEEDS 12

/* ---- deterministic randomness (splitmix64) ------------------------------------------ */
static uint64_t rnd_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A random record as both the actor and the model make it from one PRNG state. */
static struct want random_record(uint64_t *s)
{
    struct want w;
    w.obj = rnd_next(s);
    w.site = rnd_next(s) % 3 == 0 ? 0 : rnd_next(s);
    w.refcnt = (int64_t)rnd_next(s) >> (rnd_next(s) % 64);
    w.op = (uint8_t)(1 + rnd_next(s) % 63) | (uint8_t)(rnd_next(s) & 0xc0);
    w.delta = (int8_t)rnd_next(s);
    w.seq = 0;
    w.tid = 0;
    return w;
}

/* ---- actors: real threads that run one command at a time ----------------------------- */
enum cmd { CMD_NONE, CMD_RECORD, CMD_BURST, CMD_AUX, CMD_PAIR, CMD_BUSY, CMD_EXIT };

struct actor {
    pthread_t th;
    int alive;
    enum cmd cmd;       /* set by main, cleared by the actor when done */
    struct want rec;    /* CMD_RECORD, CMD_AUX (obj, site = kind, refcnt = value), CMD_BUSY */
    struct want aux;    /* CMD_PAIR: rec, then this as its AUX (obj, site = kind, refcnt) */
    uint64_t burst_n;   /* CMD_BURST: records ... */
    uint64_t burst_rnd; /* ... drawn from this PRNG state */
    int model_slot;     /* the model's descriptor for this thread, -1 unregistered */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct actor actors[ACTORS];

static void *actor_main(void *arg)
{
    struct actor *a = arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (a->cmd == CMD_NONE)
            pthread_cond_wait(&cv, &mu);
        enum cmd c = a->cmd;
        pthread_mutex_unlock(&mu);

        struct want *w = &a->rec;
        if (c == CMD_RECORD) {
            pyref_record((void *)(uintptr_t)w->obj,
                         (const struct pyref_site *)(uintptr_t)w->site, w->refcnt, w->op,
                         w->delta);
        } else if (c == CMD_BURST) {
            uint64_t s = a->burst_rnd;
            for (uint64_t i = 0; i < a->burst_n; i++) {
                struct want r = random_record(&s);
                pyref_record((void *)(uintptr_t)r.obj,
                             (const struct pyref_site *)(uintptr_t)r.site, r.refcnt, r.op,
                             r.delta);
            }
        } else if (c == CMD_AUX) {
            pyref_record_aux((void *)(uintptr_t)w->obj, w->site, w->refcnt);
        } else if (c == CMD_PAIR) {
            pyref_record_pair((void *)(uintptr_t)w->obj,
                              (const struct pyref_site *)(uintptr_t)w->site, w->refcnt, w->op,
                              w->delta, (void *)(uintptr_t)a->aux.obj, a->aux.site,
                              a->aux.refcnt);
        } else if (c == CMD_BUSY) {
            /* As if a signal handler recorded while this thread was inside pyref_record. */
            pyref_tls_thread->busy = 1;
            pyref_record((void *)(uintptr_t)w->obj, NULL, 1, PYREF_OP_INCREF, 1);
            pyref_record_aux((void *)(uintptr_t)w->obj, 1, 1);
            pyref_record_pair((void *)(uintptr_t)w->obj, NULL, 1, PYREF_OP_BORROW, 0,
                              (void *)(uintptr_t)w->obj, 1, 1);
            pyref_tls_thread->busy = 0;
        }

        pthread_mutex_lock(&mu);
        a->cmd = CMD_NONE;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        if (c == CMD_EXIT)
            return NULL;
    }
}

/* Runs one command on actor a and waits until it is done (and, for CMD_EXIT, joined). */
static void actor_run(struct actor *a, enum cmd c)
{
    pthread_mutex_lock(&mu);
    a->cmd = c;
    pthread_cond_broadcast(&cv);
    while (a->cmd != CMD_NONE)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    if (c == CMD_EXIT) {
        pthread_join(a->th, NULL);
        a->alive = 0;
    }
}

/* ---- the model ----------------------------------------------------------------------- */
struct mslot {
    uint32_t state;
    uint64_t head, lost;
    uint16_t serial;
    int mapped;
    struct want rec[CAP]; /* rec[p % CAP]: the record at position p */
};
static struct mslot ms[MAXT];
static uint64_t m_seq, m_registered, m_lost_nothread;

/* The runtime's registration rule; returns the slot or -1 (counted in lost_nothread). */
static int model_register(void)
{
    int pick = -1;
    for (int i = 0; i < MAXT && pick < 0; i++)
        if (ms[i].state == PYREF_THREAD_FREE)
            pick = i;
    for (int i = 0; i < MAXT && !(pick >= 0 && ms[pick].state == PYREF_THREAD_FREE); i++)
        if (ms[i].state == PYREF_THREAD_EXITED && (pick < 0 || ms[i].head < ms[pick].head))
            pick = i;
    if (pick < 0) {
        m_lost_nothread++;
        return -1;
    }
    ms[pick].state = PYREF_THREAD_LIVE;
    ms[pick].mapped = 1;
    ms[pick].serial = (uint16_t)++m_registered;
    return pick;
}

static void model_record(struct actor *a, struct want w)
{
    if (a->model_slot < 0 && (a->model_slot = model_register()) < 0)
        return;
    struct mslot *m = &ms[a->model_slot];
    w.seq = (uint32_t)m_seq++;
    w.tid = m->serial;
    m->rec[m->head++ % CAP] = w;
}

static void model_aux(struct actor *a, struct want w)
{
    if (a->model_slot < 0)
        return; /* no previous record on this thread: nothing to attach to */
    struct mslot *m = &ms[a->model_slot];
    w.seq = m->rec[(m->head - 1) % CAP].seq;
    w.op = PYREF_OP_AUX;
    w.delta = 0;
    w.tid = m->serial;
    m->rec[m->head++ % CAP] = w;
}

/* Compares the ring with the model: header counters, descriptors, every window slot.
 * Returns 1 when they agree; else counts a failure naming the first difference. */
static int compare(uint64_t seed, int step, const char *what)
{
    struct pyref_ring_header *h = pyref_ring;
    char why[600] = "";
    int bad = 0;
#define MISMATCH(...)                                                                          \
    do {                                                                                       \
        if (bad++ == 0)                                                                        \
            snprintf(why, sizeof why, __VA_ARGS__);                                            \
    } while (0)
    if (h->seq != m_seq)
        MISMATCH("header seq %llu, model %llu", (unsigned long long)h->seq,
                 (unsigned long long)m_seq);
    if (h->threads_registered != m_registered)
        MISMATCH("threads_registered %llu, model %llu",
                 (unsigned long long)h->threads_registered, (unsigned long long)m_registered);
    if (h->lost_nothread != m_lost_nothread)
        MISMATCH("lost_nothread %llu, model %llu", (unsigned long long)h->lost_nothread,
                 (unsigned long long)m_lost_nothread);
    for (int i = 0; i < MAXT; i++) {
        const struct pyref_thread *t = &h->threads[i];
        const struct mslot *m = &ms[i];
        if (t->state != m->state || t->head != m->head || t->lost != m->lost ||
            t->serial != m->serial || (t->ring != NULL) != m->mapped || t->busy != 0) {
            MISMATCH("descriptor %d: state %u head %llu lost %llu serial %u ring %p busy %u;"
                     " model state %u head %llu lost %llu serial %u mapped %d",
                     i, t->state, (unsigned long long)t->head, (unsigned long long)t->lost,
                     t->serial, (void *)t->ring, t->busy, m->state, (unsigned long long)m->head,
                     (unsigned long long)m->lost, m->serial, m->mapped);
            continue;
        }
        if (t->ring == NULL)
            continue;
        uint64_t first = m->head > CAP ? m->head - CAP : 0;
        for (uint64_t p = first; p < m->head; p++) {
            char one[400];
            if (!record_is(&t->ring[p % CAP], &m->rec[p % CAP], one, sizeof one))
                MISMATCH("descriptor %d position %llu: %s", i, (unsigned long long)p, one);
        }
        for (uint64_t p = m->head; p < CAP; p++)
            if (t->ring[p].u.commit != 0 || t->ring[p].obj != 0)
                MISMATCH("descriptor %d slot %llu past the window is written", i,
                         (unsigned long long)p);
    }
#undef MISMATCH
    CHECK(bad == 0, "seed %llu step %d (%s): %d mismatches; first: %s",
          (unsigned long long)seed, step, what, bad, why);
    return bad == 0;
}

/* One random sequence of operations, compared with the model after each. Returns 0 at
 * the first difference (the model is then out of step: later comparisons would only
 * repeat it). */
static int run_seed(uint64_t seed)
{
    uint64_t s = seed;
    for (int step = 0; step < OPS_PER_SEED; step++) {
        struct actor *a = &actors[rnd_next(&s) % ACTORS];
        unsigned dice = (unsigned)(rnd_next(&s) % 100);
        const char *what;
        if (!a->alive) {
            what = "spawn";
            a->alive = 1;
            a->model_slot = -1;
            a->cmd = CMD_NONE;
            if (pthread_create(&a->th, NULL, actor_main, a) != 0) {
                perror("pthread_create");
                exit(2);
            }
        } else if (dice < 45) {
            what = "record";
            a->rec = random_record(&s);
            actor_run(a, CMD_RECORD);
            model_record(a, a->rec);
        } else if (dice < 55) {
            what = "burst";
            a->burst_n = 1 + rnd_next(&s) % (rnd_next(&s) % 4 == 0 ? 3 * CAP : 20);
            a->burst_rnd = rnd_next(&s);
            actor_run(a, CMD_BURST);
            uint64_t bs = a->burst_rnd;
            for (uint64_t i = 0; i < a->burst_n; i++)
                model_record(a, random_record(&bs));
        } else if (dice < 70) {
            what = "aux";
            a->rec = random_record(&s);
            actor_run(a, CMD_AUX);
            model_aux(a, a->rec);
        } else if (dice < 70 + 8) {
            /* an origin and its AUX in one write: what two calls would leave */
            what = "pair";
            a->rec = random_record(&s);
            a->aux = random_record(&s);
            actor_run(a, CMD_PAIR);
            model_record(a, a->rec);
            if (a->model_slot >= 0 && ms[a->model_slot].head > 0)
                model_aux(a, a->aux);
        } else if (dice < 83) {
            what = "busy";
            if (a->model_slot < 0)
                continue; /* the guard needs a descriptor */
            a->rec = random_record(&s);
            actor_run(a, CMD_BUSY);
            ms[a->model_slot].lost += 4; /* the record, the AUX, and a pair's two */
        } else if (dice < 91) {
            what = "exit";
            actor_run(a, CMD_EXIT);
            if (a->model_slot >= 0)
                ms[a->model_slot].state = PYREF_THREAD_EXITED;
        } else {
            what = "idle";
        }
        if (!compare(seed, step, what))
            return 0;
    }
    for (int i = 0; i < ACTORS; i++) {
        if (actors[i].alive) {
            actor_run(&actors[i], CMD_EXIT);
            if (actors[i].model_slot >= 0)
                ms[actors[i].model_slot].state = PYREF_THREAD_EXITED;
        }
    }
    return compare(seed, OPS_PER_SEED, "all exited");
}

static void child_model(void)
{
    struct pyref_ring_header *h = pyref_ring;
    CHECK(h->capacity == CAP && h->max_threads == MAXT, "capacity %u threads %u, want %d %d",
          h->capacity, h->max_threads, CAP, MAXT);
    if (h->capacity != CAP || h->max_threads != MAXT)
        return;
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        if (seed == 3) /* the records' 32-bit seq wraps during this seed */
            h->seq = m_seq = (1ull << 32) - 700;
        if (seed == 5) /* registration serials wrap through 0 during this seed */
            h->threads_registered = m_registered = 65533;
        if (!run_seed(seed))
            return;
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "model") == 0) {
        child_model();
        return check_done();
    }
    const char *env[] = {"PYREF_RING_RECORDS=256", "PYREF_RING_THREADS=4", "PYREF", NULL};
    spawn_self("model", env, NULL, 0);
    return check_done();
}
