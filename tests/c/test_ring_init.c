/*
 * test_ring_init.c — the ring header as libpyref's constructor creates it from the
 * environment (docs/ring-format.md, "Header" and "Configuration").
 *
 * The header is built once, at load, so every case runs in a child of its own
 * (spawn_self) with PYREF_RING_RECORDS / PYREF_RING_THREADS / PYREF set; the child checks
 * the header against PYREF_TEST_WANT_* and the parent checks the child's stderr (one
 * "pyref: ignoring ..." line for a refused value, nothing for an accepted one).
 */
#include "check.h"

#include <stddef.h>
#include <time.h>

/* Child: every fixed header field against the spec, with the expected capacity and thread
 * count from PYREF_TEST_WANT_RECORDS / PYREF_TEST_WANT_THREADS. */
static void child_header(void)
{
    struct pyref_ring_header *h = pyref_ring;
    CHECK(h != NULL, "constructor created no header");
    if (h == NULL)
        return;
    unsigned long cap = strtoul(getenv("PYREF_TEST_WANT_RECORDS"), NULL, 10);
    unsigned long nth = strtoul(getenv("PYREF_TEST_WANT_THREADS"), NULL, 10);

    CHECK(((uintptr_t)h & 4095) == 0, "header at %p is not page aligned", (void *)h);
    CHECK_EQ_U64(h->magic, PYREF_MAGIC, "magic");
    CHECK(memcmp(&h->magic, "PYREFRNG", 8) == 0, "magic bytes are not \"PYREFRNG\"");
    CHECK_EQ_U64(h->version, PYREF_FORMAT_VERSION, "version");
    CHECK_EQ_U64(h->record_size, 32, "record_size");
    CHECK_EQ_U64(h->capacity, cap, "capacity");
    CHECK_EQ_U64(h->word_size, 8, "word_size");
    CHECK_EQ_U64(h->byte_order, 1, "byte_order");
    CHECK_EQ_U64(h->field_count, 8, "field_count");
    CHECK_EQ_U64(h->pid, getpid(), "pid");
    CHECK_EQ_U64(h->thread_table_off, 256, "thread_table_off");
    CHECK_EQ_U64(h->thread_desc_size, 64, "thread_desc_size");
    CHECK_EQ_U64(h->max_threads, nth, "max_threads");
    CHECK_EQ_U64(h->header_size, 256 + nth * 64, "header_size");
    CHECK_EQ_U64(h->flags, 0, "flags");
    CHECK_EQ_U64(h->threads_registered, 0, "threads_registered");
    CHECK_EQ_U64(h->lost_nothread, 0, "lost_nothread");
    CHECK_EQ_U64(h->forks, 0, "forks");
    CHECK_EQ_U64(h->seq, 0, "seq");

    /* The field table names the record's own layout. */
    static const size_t off[8] = {
        offsetof(struct pyref_record, obj),     offsetof(struct pyref_record, site),
        offsetof(struct pyref_record, refcnt),  offsetof(struct pyref_record, u.c.seq),
        offsetof(struct pyref_record, u.c.op),  offsetof(struct pyref_record, u.c.delta),
        offsetof(struct pyref_record, u.c.tid), offsetof(struct pyref_record, u.commit)};
    static const size_t size[8] = {8, 8, 8, 4, 1, 1, 2, 8};
    for (int i = 0; i < 8; i++) {
        CHECK(h->fields[i][0] == off[i] && h->fields[i][1] == size[i],
              "fields[%d] = (%u, %u), want (%zu, %zu)", i, h->fields[i][0], h->fields[i][1],
              off[i], size[i]);
    }

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    CHECK(h->init_time_ns <= now_ns && now_ns - h->init_time_ns < 60000000000ull,
          "init_time_ns %llu is not within the last minute of %llu",
          (unsigned long long)h->init_time_ns, (unsigned long long)now_ns);

    int reserved_zero = 1;
    for (size_t i = 0; i < sizeof h->reserved0; i++)
        reserved_zero &= h->reserved0[i] == 0;
    for (size_t i = 0; i < sizeof h->reserved1; i++)
        reserved_zero &= h->reserved1[i] == 0;
    CHECK(reserved_zero, "reserved header bytes are not zero");

    /* The whole thread table is mapped and free (reading the last byte must not fault). */
    int all_free = 1;
    for (unsigned long i = 0; i < nth; i++) {
        const struct pyref_thread *t = &h->threads[i];
        all_free &=
            t->ring == NULL && t->head == 0 && t->state == PYREF_THREAD_FREE && t->serial == 0;
    }
    CHECK(all_free, "a descriptor is in use before any record");
    CHECK(((volatile const char *)h)[h->header_size - 1] == 0, "last header byte");

    /* The first record registers this thread with a ring of `capacity` records. */
    pyref_record((void *)0x1000, NULL, 7, PYREF_OP_INCREF, 1);
    struct pyref_thread *t = test_thread();
    CHECK(t == &h->threads[0], "first registration took descriptor %ld, want 0",
          thread_index(t));
    if (t == NULL)
        return;
    CHECK_EQ_U64(t->mask, cap - 1, "descriptor mask");
    CHECK(t->seqp == &h->seq, "descriptor seqp %p, want &header.seq %p", (void *)t->seqp,
          (void *)&h->seq);
    CHECK_EQ_U64(t->state, PYREF_THREAD_LIVE, "descriptor state");
    CHECK_EQ_U64(t->os_tid, test_gettid(), "descriptor os_tid");
    CHECK_EQ_U64(t->serial, 1, "descriptor serial");
    CHECK_EQ_U64(h->threads_registered, 1, "threads_registered after one thread");
    CHECK(t->ring != NULL && t->ring[cap - 1].u.commit == 0, "last ring slot readable, empty");
}

static volatile int recorded_off;

static void *record_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        pyref_record((void *)(uintptr_t)(0x2000 + i), NULL, 1, PYREF_OP_INCREF, 1);
        pyref_record_aux((void *)(uintptr_t)(0x2000 + i), 1, 2);
    }
    recorded_off = test_thread() == NULL;
    return NULL;
}

/* Child with PYREF=off: the flag is set and no record, thread or counter appears. */
static void child_off(void)
{
    struct pyref_ring_header *h = pyref_ring;
    CHECK(h != NULL, "no header with PYREF=off (readers still want to find it)");
    if (h == NULL)
        return;
    CHECK_EQ_U64(h->flags & PYREF_FLAG_DISABLED, PYREF_FLAG_DISABLED, "flags.disabled");
    record_many(NULL);
    CHECK(recorded_off, "main thread got a descriptor with PYREF=off");
    run_thread(record_many, NULL);
    CHECK(recorded_off, "second thread got a descriptor with PYREF=off");
    int untouched = 1;
    for (uint32_t i = 0; i < h->max_threads; i++)
        untouched &= h->threads[i].state == PYREF_THREAD_FREE && h->threads[i].ring == NULL &&
                     h->threads[i].head == 0;
    CHECK(untouched, "a descriptor changed with PYREF=off");
    CHECK_EQ_U64(h->seq, 0, "seq with PYREF=off");
    CHECK_EQ_U64(h->threads_registered, 0, "threads_registered with PYREF=off");
    CHECK_EQ_U64(h->lost_nothread, 0, "lost_nothread with PYREF=off");
}

/* Child with PYREF set to something other than "off": recording is on. */
static void child_on(void)
{
    CHECK(pyref_ring != NULL && pyref_ring->flags == 0, "flags with PYREF=%s", getenv("PYREF"));
    record_many(NULL);
    CHECK(test_thread() != NULL && test_thread()->head == 2000,
          "PYREF=%s did not record 1000 records + 1000 aux", getenv("PYREF"));
}

/* Counts the lines of s. */
static int line_count(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* One configuration case: runs the header child with PYREF_RING_RECORDS=records and
 * PYREF_RING_THREADS=threads (NULL: unset) and expects capacity want_rec, want_thr
 * descriptors, and a refusal line on stderr for each variable named in `refused`. */
static void config_case(const char *records, const char *threads, unsigned long want_rec,
                        unsigned long want_thr, int refused_rec, int refused_thr)
{
    char rec_env[96], thr_env[96], want_rec_env[64], want_thr_env[64], err[8192];
    if (records)
        snprintf(rec_env, sizeof rec_env, "PYREF_RING_RECORDS=%s", records);
    else
        snprintf(rec_env, sizeof rec_env, "PYREF_RING_RECORDS");
    if (threads)
        snprintf(thr_env, sizeof thr_env, "PYREF_RING_THREADS=%s", threads);
    else
        snprintf(thr_env, sizeof thr_env, "PYREF_RING_THREADS");
    snprintf(want_rec_env, sizeof want_rec_env, "PYREF_TEST_WANT_RECORDS=%lu", want_rec);
    snprintf(want_thr_env, sizeof want_thr_env, "PYREF_TEST_WANT_THREADS=%lu", want_thr);
    const char *env[] = {rec_env, thr_env, want_rec_env, want_thr_env, "PYREF", NULL};
    spawn_self("header", env, err, sizeof err);

    int want_lines = refused_rec + refused_thr;
    CHECK(line_count(err) == want_lines, "records=%s threads=%s: %d stderr lines, want %d:\n%s",
          records ? records : "(unset)", threads ? threads : "(unset)", line_count(err),
          want_lines, err);
    char prefix[128];
    if (refused_rec) {
        char using_default[64];
        snprintf(using_default, sizeof using_default, "using %d", PYREF_DEFAULT_RECORDS);
        snprintf(prefix, sizeof prefix, "pyref: ignoring PYREF_RING_RECORDS=%s (", records);
        CHECK(strstr(err, prefix) != NULL && strstr(err, using_default) != NULL,
              "no refusal line for PYREF_RING_RECORDS=%s in:\n%s", records, err);
    }
    if (refused_thr) {
        snprintf(prefix, sizeof prefix, "pyref: ignoring PYREF_RING_THREADS=%s (", threads);
        CHECK(strstr(err, prefix) != NULL && strstr(err, "using 256") != NULL,
              "no refusal line for PYREF_RING_THREADS=%s in:\n%s", threads, err);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        if (strcmp(argv[1], "header") == 0)
            child_header();
        else if (strcmp(argv[1], "off") == 0)
            child_off();
        else if (strcmp(argv[1], "on") == 0)
            child_on();
        return check_done();
    }

    /* PYREF_RING_RECORDS: a power of two in [2^8, 2^26]; anything else -> the default. */
    config_case(NULL, NULL, PYREF_DEFAULT_RECORDS, 256, 0, 0);
    config_case("", NULL, PYREF_DEFAULT_RECORDS, 256, 0, 0);
    config_case("256", NULL, 256, 256, 0, 0);
    config_case("1024", NULL, 1024, 256, 0, 0);
    config_case("67108864", NULL, 67108864, 256, 0, 0);
    config_case("128", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0);       /* below 2^8 */
    config_case("134217728", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0); /* above 2^26 */
    config_case("1000", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0);      /* not a power of two */
    config_case("65537", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0);
    config_case("0", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0);
    config_case("-1024", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0);
    config_case("abc", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0);
    config_case("1024x", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0);
    config_case("0x400", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0);
    /* overflows strtoul */
    config_case("18446744073709551616", NULL, PYREF_DEFAULT_RECORDS, 256, 1, 0);

    /* PYREF_RING_THREADS: 1..4096, any value; anything else -> 256. */
    config_case(NULL, "1", PYREF_DEFAULT_RECORDS, 1, 0, 0);
    config_case(NULL, "3", PYREF_DEFAULT_RECORDS, 3, 0, 0);
    config_case(NULL, "4096", PYREF_DEFAULT_RECORDS, 4096, 0, 0);
    config_case(NULL, "0", PYREF_DEFAULT_RECORDS, 256, 0, 1);
    config_case(NULL, "4097", PYREF_DEFAULT_RECORDS, 256, 0, 1);
    config_case(NULL, "many", PYREF_DEFAULT_RECORDS, 256, 0, 1);
    config_case("512", "8", 512, 8, 0, 0);
    config_case("100", "0", PYREF_DEFAULT_RECORDS, 256, 1, 1);

    /* PYREF=off records nothing; any other value records. */
    const char *off[] = {"PYREF=off", NULL};
    spawn_self("off", off, NULL, 0);
    const char *on[] = {"PYREF=on", NULL};
    spawn_self("on", on, NULL, 0);
    const char *empty[] = {"PYREF=", NULL};
    spawn_self("on", empty, NULL, 0);

    return check_done();
}
