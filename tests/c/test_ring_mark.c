/*
 * test_ring_mark.c — pyref_mark(): the MARK record and its AUX TEXT records as
 * docs/ring-format.md ("Marks") lays them out: one seq for all, head advanced once, the
 * label's bytes 16 a record zero-padded, cut at PYREF_MARK_MAX; a label crossing the ring's
 * end; the thread's first record (the registering path); a mark while the thread is inside
 * a record (the re-entry guard: dropped, counted in thread.lost); PYREF=off (nothing).
 * Runs in a child with PYREF_RING_RECORDS=256 so that wrapping is cheap.
 */
#include "check.h"

/* The label bytes the TEXT records after position `pos` carry: `n` of them. */
static void label_at(struct pyref_thread *t, uint64_t pos, uint32_t n, char *out)
{
    for (uint32_t k = 0; k < (n + 15) / 16; k++) {
        const struct pyref_record *r = &t->ring[(pos + 1 + k) & t->mask];
        memcpy(out + 16 * k, &r->obj, 8);
        memcpy(out + 16 * k + 8, &r->refcnt, 8);
    }
    out[n] = '\0';
}

/* Checks the mark written at `pos` by the calling thread: op, fields, seq shared by every
 * record, the text and its zero padding. */
static void check_mark(struct pyref_thread *t, uint64_t pos, const char *label)
{
    size_t full = strlen(label);
    uint32_t n = full > PYREF_MARK_MAX ? PYREF_MARK_MAX : (uint32_t)full;
    const struct pyref_record *m = &t->ring[pos & t->mask];
    CHECK(m->u.c.op == PYREF_OP_MARK && m->u.c.delta == 0 && m->site == 0,
          "MARK record: op %u delta %d site %llx", m->u.c.op, m->u.c.delta,
          (unsigned long long)m->site);
    CHECK_EQ_U64(m->obj, n, "MARK obj (bytes copied)");
    CHECK_EQ_U64(m->refcnt, full, "MARK refcnt (full length)");
    for (uint32_t k = 0; k < (n + 15) / 16; k++) {
        const struct pyref_record *a = &t->ring[(pos + 1 + k) & t->mask];
        CHECK(a->u.c.op == PYREF_OP_AUX && a->site == PYREF_AUX_TEXT &&
                  a->u.c.seq == m->u.c.seq && a->u.c.tid == m->u.c.tid,
              "TEXT record %u: op %u kind %llx seq %u (MARK's %u)", k, a->u.c.op,
              (unsigned long long)a->site, a->u.c.seq, m->u.c.seq);
    }
    char got[PYREF_MARK_MAX + 17];
    memset(got, 'x', sizeof got);
    label_at(t, pos, (n + 15) / 16 * 16, got);
    CHECK(memcmp(got, label, n) == 0, "label: got '%.*s', want '%.*s'", (int)n, got, (int)n,
          label);
    for (uint32_t j = n; j < (n + 15) / 16 * 16; j++)
        CHECK(got[j] == 0, "padding byte %u is %d", j, got[j]);
}

static void *first_record_is_a_mark(void *unused)
{
    (void)unused;
    CHECK(test_thread() == NULL, "a fresh thread has a descriptor");
    pyref_mark("test:start first");
    struct pyref_thread *t = test_thread();
    CHECK(t != NULL, "pyref_mark did not register the thread");
    if (t != NULL) {
        CHECK_EQ_U64(t->head, 1 + 1, "head after a 16-byte label's mark (registering)");
        check_mark(t, 0, "test:start first");
    }
    return NULL;
}

static void child_marks(void)
{
    struct pyref_ring_header *h = pyref_ring;
    CHECK_EQ_U64(h->capacity, 256, "capacity (PYREF_RING_RECORDS=256)");
    pyref_record((void *)0x1000, NULL, 1, PYREF_OP_INCREF, 1); /* registers */
    struct pyref_thread *t = test_thread();
    uint64_t head = t->head, seq = h->seq;

    pyref_mark("short");
    CHECK_EQ_U64(t->head, head + 2, "head after a 5-byte label");
    CHECK_EQ_U64(h->seq, seq + 1, "one seq for a mark");
    check_mark(t, head, "short");

    head = t->head;
    pyref_mark("");
    CHECK_EQ_U64(t->head, head + 1, "an empty label: the MARK alone");
    check_mark(t, head, "");
    head = t->head;
    pyref_mark(NULL);
    CHECK_EQ_U64(t->head, head + 1, "NULL: the MARK alone");

    char big[400];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    head = t->head;
    pyref_mark(big);
    CHECK_EQ_U64(t->head, head + 1 + PYREF_MARK_MAX / 16, "a label cut at PYREF_MARK_MAX");
    check_mark(t, head, big);

    /* a label across the ring's end: fill up to 3 slots before it */
    while ((t->head & t->mask) != t->mask - 2)
        pyref_record((void *)0x1000, NULL, 1, PYREF_OP_INCREF, 1);
    head = t->head;
    const char *across = "test:start tests/test_wrap.py::test_across_the_end";
    pyref_mark(across);
    check_mark(t, head, across);
    CHECK(((t->head - 1) & t->mask) < (head & t->mask), "the mark did not wrap");

    /* inside a record (what a signal handler interrupting one sees): dropped, counted */
    uint64_t lost = t->lost;
    head = t->head;
    t->busy = 1;
    pyref_mark("0123456789abcdef0");          /* 17 bytes: a MARK and two TEXT records */
    t->busy = 0;
    CHECK_EQ_U64(t->head, head, "head after a re-entered mark");
    CHECK_EQ_U64(t->lost, lost + 3, "thread.lost after a re-entered mark");

    run_thread(first_record_is_a_mark, NULL);
}

static void child_off(void)
{
    pyref_mark("nothing");
    CHECK(test_thread() == NULL, "PYREF=off: a mark registered the thread");
    CHECK_EQ_U64(pyref_ring->seq, 0, "PYREF=off: seq after a mark");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "marks") == 0) {
        child_marks();
        return check_done();
    }
    if (argc > 1 && strcmp(argv[1], "off") == 0) {
        child_off();
        return check_done();
    }
    spawn_self("marks", (const char *const[]){"PYREF_RING_RECORDS=256", "PYREF", NULL}, NULL,
               0);
    spawn_self("off", (const char *const[]){"PYREF=off", NULL}, NULL, 0);
    return check_done();
}
