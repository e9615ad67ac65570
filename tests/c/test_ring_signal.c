/*
 * test_ring_signal.c — the re-entry guard: a signal handler that records on a thread that
 * is inside pyref_record() must drop its record and count it in the thread's `lost`,
 * writing nothing (no slot byte, no head, no seq).
 *
 *   - by hand: busy = 1, then pyref_record() / pyref_record_aux();
 *   - a real handler, raised while busy = 1;
 *   - asynchronously: an interval timer fires thousands of times while the thread records
 *     in a loop; the handler records too. Afterwards: every record the main loop made is in
 *     the ring in order; each handler record either made it (whole, in its place) or is
 *     counted in `lost`; head + lost == attempts; seqs along the ring are consecutive.
 */
#include "check.h"

#include <signal.h>
#include <sys/time.h>
#include <time.h>

#define MAIN_TAG 0x1000000000ull
#define HANDLER_TAG 0x2000000000ull

static volatile sig_atomic_t handler_calls, handler_written;

/* Records one INCREF and one AUX, and notes whether the INCREF got in. */
static void recording_handler(int sig)
{
    (void)sig;
    struct pyref_thread *t = pyref_tls_thread;
    uint64_t head = t->head;
    pyref_record((void *)(uintptr_t)(HANDLER_TAG | (uint64_t)handler_calls), NULL, 1,
                 PYREF_OP_INCREF, 1);
    handler_calls++;
    if (t->head != head)
        handler_written++;
}

/* busy = 1 by hand: pyref_record and pyref_record_aux drop and count. */
static void guard_by_hand(void)
{
    pyref_record((void *)0x10, NULL, 2, PYREF_OP_INCREF, 1); /* registers */
    struct pyref_thread *t = pyref_tls_thread;
    struct pyref_record before[2];
    memcpy(before, &t->ring[t->head & t->mask], sizeof before);
    uint64_t head = t->head, seq = pyref_ring->seq, lost = t->lost;

    t->busy = 1;
    pyref_record((void *)0x20, (const struct pyref_site *)0x30, 5, PYREF_OP_DECREF, -1);
    pyref_record_aux((void *)0x20, 1, 2);
    CHECK_EQ_U64(t->lost, lost + 2, "lost after two records while busy");
    CHECK_EQ_U64(t->busy, 1, "busy left as the interrupted writer had it");
    t->busy = 0;

    CHECK_EQ_U64(t->head, head, "head after dropped records");
    CHECK_EQ_U64(pyref_ring->seq, seq, "seq after dropped records");
    CHECK(memcmp(before, &t->ring[head & t->mask], sizeof before) == 0,
          "a dropped record wrote into the ring");

    /* The guard lets the next record through. */
    pyref_record((void *)0x40, NULL, 3, PYREF_OP_INCREF, 1);
    CHECK(t->head == head + 1 && t->ring[head & t->mask].obj == 0x40,
          "record after the guard: head %llu", (unsigned long long)t->head);
}

/* A real handler, delivered while the thread is (made to look) inside pyref_record. */
static void guard_raised(void)
{
    struct pyref_thread *t = pyref_tls_thread;
    signal(SIGUSR1, recording_handler);
    uint64_t head = t->head, seq = pyref_ring->seq, lost = t->lost;
    handler_calls = handler_written = 0;

    t->busy = 1;
    raise(SIGUSR1);
    t->busy = 0;
    CHECK(handler_calls == 1 && handler_written == 0, "handler: %d calls, %d written",
          (int)handler_calls, (int)handler_written);
    CHECK(t->lost == lost + 1 && t->head == head && pyref_ring->seq == seq,
          "raised while busy: lost +%llu head +%llu seq +%llu",
          (unsigned long long)(t->lost - lost), (unsigned long long)(t->head - head),
          (unsigned long long)(pyref_ring->seq - seq));

    raise(SIGUSR1); /* not busy: the handler's record goes in */
    CHECK(handler_written == 1 && t->head == head + 1 && t->lost == lost + 1,
          "raised while idle: written %d head +%llu", (int)handler_written,
          (unsigned long long)(t->head - head));
    signal(SIGUSR1, SIG_DFL);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Timer signals land anywhere in the main loop's records. */
static void guard_async(void)
{
    struct pyref_thread *t = pyref_tls_thread;
    struct pyref_ring_header *h = pyref_ring;
    uint64_t head0 = t->head, lost0 = t->lost, seq0 = h->seq;
    handler_calls = handler_written = 0;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = recording_handler;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 20}, {0, 20}};
    setitimer(ITIMER_REAL, &it, NULL);

    /* Until enough signals came, both dropped and written ones, and the ring wrapped;
     * at most 10 s (under TSan on a loaded machine the ring may not wrap by then). */
    uint64_t n = 0, deadline = now_ns() + 10000000000ull;
    while (!(handler_calls >= 5000 && handler_written > 0 &&
             handler_calls - handler_written > 0) ||
           n < h->capacity) {
        for (int k = 0; k < 4096; k++, n++)
            pyref_record((void *)(uintptr_t)(MAIN_TAG | n), NULL, (int64_t)n, PYREF_OP_DECREF,
                         -1);
        if (now_ns() > deadline)
            break;
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    signal(SIGALRM, SIG_DFL);

    uint64_t calls = handler_calls, written = handler_written;
    if (getenv("PYREF_TEST_VERBOSE"))
        fprintf(stderr, "async: %llu main records, %llu signals, %llu dropped by the guard\n",
                (unsigned long long)n, (unsigned long long)calls,
                (unsigned long long)(calls - written));
    CHECK(calls > 0 && written > 0 && written < calls,
          "timer: %llu handler calls, %llu written: the guard was not exercised both ways",
          (unsigned long long)calls, (unsigned long long)written);
    CHECK(t->head - head0 == n + written && t->lost - lost0 == calls - written &&
              h->seq - seq0 == n + written,
          "head +%llu lost +%llu seq +%llu; want %llu main + %llu handler records, %llu lost",
          (unsigned long long)(t->head - head0), (unsigned long long)(t->lost - lost0),
          (unsigned long long)(h->seq - seq0), (unsigned long long)n,
          (unsigned long long)written, (unsigned long long)(calls - written));

    /* The window: main records in order with no gap, handler records whole, seqs
     * consecutive (a handler never got between a record's seq load and store). Only this
     * test's records: when fewer than `capacity` were written (the deadline came first)
     * the window starts at head0, not at head - capacity (which would underflow, or reach
     * the earlier tests' records). */
    uint64_t cap = h->capacity, bad = 0, next_main = (uint64_t)-1;
    uint64_t first = t->head - head0 >= cap ? t->head - cap : head0;
    char why[300] = "";
    for (uint64_t p = first; p < t->head; p++) {
        const struct pyref_record *r = &t->ring[p & t->mask];
        const struct pyref_record *prev = &t->ring[(p - 1) & t->mask];
        int ok;
        if ((r->obj & ~0xfffffffffull) == MAIN_TAG) {
            uint64_t i = r->obj & 0xfffffffffull;
            ok = r->refcnt == (int64_t)i && r->u.c.op == PYREF_OP_DECREF &&
                 r->u.c.delta == -1 && (next_main == (uint64_t)-1 || i == next_main);
            next_main = i + 1;
        } else {
            ok = (r->obj & ~0xfffffffffull) == HANDLER_TAG && r->refcnt == 1 &&
                 r->u.c.op == PYREF_OP_INCREF && r->u.c.delta == 1;
        }
        ok = ok && r->u.c.tid == t->serial && (p == first || r->u.c.seq == prev->u.c.seq + 1);
        if (!ok && bad++ == 0)
            snprintf(why, sizeof why, "position %llu: obj %#llx refcnt %lld op %u seq %u",
                     (unsigned long long)p, (unsigned long long)r->obj, (long long)r->refcnt,
                     r->u.c.op, r->u.c.seq);
    }
    CHECK(bad == 0 && next_main == n,
          "%llu bad records in the window (last main %llu of %llu); "
          "first: %s",
          (unsigned long long)bad, (unsigned long long)next_main, (unsigned long long)n, why);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "signal") == 0) {
        guard_by_hand();
        guard_raised();
        guard_async();
        return check_done();
    }
    const char *env[] = {"PYREF_RING_RECORDS=65536", "PYREF", NULL};
    spawn_self("signal", env, NULL, 0);
    return check_done();
}
