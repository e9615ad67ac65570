/*
 * test_ring_wrap.c — one thread's ring at the fill levels where wrap-around can go wrong:
 * empty, half, one short of full, full, full + 1, 2 × full + 3 and 1000 × full, each in a
 * fresh thread (so a fresh descriptor with head 0), at capacities 256, 4096 and the default
 * 65536. After each: head, every slot of the window [head − n, head) (positions, fields,
 * commit word, seq), the untouched slots past the window, and the reader's counters
 * (written = decoded + overwritten + torn). Also the 32-bit seq in a record wrapping while
 * the header's 64-bit seq does not, and the reader's seq64 reconstruction across it.
 */
#include "check.h"

/* What the test writes at ring position p: every field differs from its neighbours', and
 * the op, delta and refcnt take negative / flag values. */
static struct want want_at(uint64_t p, uint64_t seq0, uint16_t tid)
{
    struct want w;
    w.obj = 0x7f0000000000ull + p * 16;
    w.site = ~p;
    w.refcnt = (int64_t)p - 5;
    w.op = (uint8_t)(1 + p % 3) | (p % 7 == 0 ? PYREF_OP_IMMORTAL : 0) |
           (p % 11 == 0 ? PYREF_OP_SHARED : 0);
    w.delta = (int8_t)(p * 37);
    w.seq = (uint32_t)(seq0 + p);
    w.tid = tid;
    return w;
}

struct scenario {
    uint64_t n;             /* records to write */
    struct pyref_thread *t; /* the writer's descriptor, NULL if it never registered */
};

static void *writer(void *arg)
{
    struct scenario *sc = arg;
    for (uint64_t p = 0; p < sc->n; p++) {
        struct want w = want_at(p, 0, 0);
        pyref_record((void *)(uintptr_t)w.obj, (const struct pyref_site *)(uintptr_t)w.site,
                     w.refcnt, w.op, w.delta);
    }
    sc->t = test_thread();
    return NULL;
}

/* Writes n records from a fresh thread and checks its descriptor, window and counters. */
static void fill_level(uint64_t n)
{
    struct pyref_ring_header *h = pyref_ring;
    uint64_t cap = h->capacity, seq0 = h->seq, reg0 = h->threads_registered;
    struct scenario sc = {n, NULL};
    run_thread(writer, &sc);

    if (n == 0) {
        CHECK(sc.t == NULL, "a thread that recorded nothing has descriptor %ld",
              thread_index(sc.t));
        CHECK_EQ_U64(h->threads_registered, reg0, "threads_registered after no record");
        CHECK_EQ_U64(h->seq, seq0, "header seq after no record");
        return;
    }
    struct pyref_thread *t = sc.t;
    CHECK(t != NULL, "n=%llu: writer has no descriptor", (unsigned long long)n);
    if (t == NULL)
        return;
    CHECK_EQ_U64(t->head, n, "head");
    CHECK_EQ_U64(t->mask, cap - 1, "mask");
    CHECK_EQ_U64(t->state, PYREF_THREAD_EXITED, "state after join");
    CHECK_EQ_U64(t->busy, 0, "busy after the last record");
    CHECK_EQ_U64(t->lost, 0, "lost");
    CHECK_EQ_U64(t->serial, (uint16_t)(reg0 + 1), "serial");
    CHECK_EQ_U64(h->threads_registered, reg0 + 1, "threads_registered");
    CHECK_EQ_U64(h->seq, seq0 + n, "header seq advanced by n");

    /* The window: each position holds its own record, commit word included. */
    uint64_t first = n > cap ? n - cap : 0, bad = 0, decoded = 0, torn = 0;
    char why[512] = "";
    for (uint64_t p = first; p < n; p++) {
        const struct pyref_record *r = &t->ring[p & t->mask];
        struct want w = want_at(p, seq0, t->serial);
        uint64_t commit = (uint64_t)w.seq | (uint64_t)w.op << 32 |
                          (uint64_t)(uint8_t)w.delta << 40 | (uint64_t)w.tid << 48;
        if (r->u.commit == 0) {
            torn++;
            continue;
        }
        decoded++;
        char one[400];
        if (!record_is(r, &w, one, sizeof one) || r->u.commit != commit) {
            if (bad++ == 0)
                snprintf(why, sizeof why, "position %llu: %s (commit %#llx, want %#llx)",
                         (unsigned long long)p, one, (unsigned long long)r->u.commit,
                         (unsigned long long)commit);
        }
        /* A reader's 64-bit seq from the 32 bits in the record and the header's seq. */
        uint64_t H = h->seq, seq64 = H - ((H - r->u.c.seq) & 0xffffffffu);
        if (seq64 != seq0 + p && bad++ == 0)
            snprintf(why, sizeof why, "position %llu: seq64 %llu, want %llu",
                     (unsigned long long)p, (unsigned long long)seq64,
                     (unsigned long long)(seq0 + p));
    }
    CHECK(bad == 0, "n=%llu cap=%llu: %llu bad slots in the window; first: %s",
          (unsigned long long)n, (unsigned long long)cap, (unsigned long long)bad, why);

    /* Past the window (ring not yet full) nothing was ever written. */
    uint64_t dirty = 0;
    for (uint64_t p = n; p < cap; p++) {
        const struct pyref_record *r = &t->ring[p];
        dirty += r->obj != 0 || r->site != 0 || r->refcnt != 0 || r->u.commit != 0;
    }
    CHECK(dirty == 0, "n=%llu: %llu slots past the window were written", (unsigned long long)n,
          (unsigned long long)dirty);

    /* The reader's counters (docs/ring-format.md, "Reading"). */
    uint64_t written = t->head, overwritten = t->head > cap ? t->head - cap : 0;
    CHECK(torn == 0, "n=%llu: %llu torn slots", (unsigned long long)n,
          (unsigned long long)torn);
    CHECK(decoded == (n < cap ? n : cap) && written == decoded + overwritten + torn,
          "n=%llu: written %llu != decoded %llu + overwritten %llu + torn %llu",
          (unsigned long long)n, (unsigned long long)written, (unsigned long long)decoded,
          (unsigned long long)overwritten, (unsigned long long)torn);
}

/* Child: every fill level at this process's capacity. */
static void child_wrap(void)
{
    struct pyref_ring_header *h = pyref_ring;
    uint64_t cap = h->capacity;
    const uint64_t levels[] = {0, cap / 2, cap - 1, cap, cap + 1, 2 * cap + 3, 1000 * cap};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        fill_level(levels[i]);

    /* The record's 32-bit seq wraps where the header's 64-bit seq crosses 2^32: start
     * half a ring before it and write 1.5 rings. */
    h->seq = (1ull << 32) - cap / 2;
    fill_level(cap + cap / 2);
    CHECK(h->seq > (1ull << 32), "header seq did not cross 2^32");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "wrap") == 0) {
        child_wrap();
        return check_done();
    }
    const char *small[] = {"PYREF_RING_RECORDS=256", "PYREF", NULL};
    const char *mid[] = {"PYREF_RING_RECORDS=4096", "PYREF", NULL};
    const char *dflt[] = {"PYREF_RING_RECORDS", "PYREF", NULL};
    spawn_self("wrap", small, NULL, 0);
    spawn_self("wrap", mid, NULL, 0);
    spawn_self("wrap", dflt, NULL, 0);
    return check_done();
}
