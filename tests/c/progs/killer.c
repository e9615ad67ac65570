/*
 * killer.c — a writer for the kill tests (tests/system/test_kill.py): N threads record into the
 * pyref ring as fast as they can until the test kills the process (SIGKILL, SIGSEGV,
 * SIGABRT) or stops it and reads its memory. Not a unit test: tests/system/test_kill.py builds it
 * with gcc against build/libpyref.a and decodes what the process leaves.
 *
 * Every field of every record is a function of (thread, i), i the record's position in its
 * thread's ring (killer_expect() in test_kill.py is the same formula), so a reader can tell
 * for every decoded record whether some write wrote exactly it, at that position:
 *
 *   i % 8     op                  obj             site               refcnt
 *   0         INCREF              obj(t, i)       &killer_sites[..]  mix(t, i)
 *   1         DECREF              obj(t, i)       &killer_sites[..]  mix(t, i)
 *   2         INCREF | IMMORTAL   obj(t, i)       &killer_sites[..]  mix(t, i)
 *   3         DEALLOC             obj(t, i)       &killer_sites[..]  1
 *   4         AUX (of i - 1)      obj(t, i)       kind 1 + i % 7     mix(t, i) ^ 0xA5
 *   5         BORROW or STEAL     obj(t, i)       &killer_sites[..]  origin word (format 2)
 *   6         STEAL, code 0       obj(t, i)       &killer_sites[..]  origin word: container
 *   7         AUX ORIGIN (of 6)   index           0x13               count
 *
 *   obj(t, i) = (t + 1) << 44 | i << 4,  mix = splitmix64's finaliser of obj(t, i);
 *   the origin at 5 (i / 8 odd: BORROW, count 1 + i % 255, index i % 100000 - 1, code layout
 *   0; even: STEAL, count 256 + i % 100000, index i % 254 - 1, layout 1) and at 6 (count
 *   2^20 + i % 4096: it does not fit, index i % 1000 - 1) name the container
 *   ((t + 1) << 40 | i << 3) & PYREF_ORIGIN_PTR_MASK: killer_origin(). 6 and 7 are one
 *   write (pyref_record_pair, as the C-API wrappers write an origin that does not fit).
 *
 * Before each write, thread t stores i in killer_cur[t] (a volatile word), so a reader of
 * the dead process knows which write was under way: the thread's head must be i (write not
 * finished) or i + 1 (head stored, killer_cur not yet advanced; i + 2 after the two-slot
 * write at i % 8 == 6).
 *
 * Usage: killer NTHREADS [gil] [fork] [for=SECONDS]
 *   gil   serialise the writers with one mutex, as the GIL does (seqs are then exact);
 *   for=S exit(0) after S seconds instead of running until killed (`make tsan` runs the
 *         writers so, under ThreadSanitizer);
 *   fork  the main thread records too and forks every few milliseconds (holding the
 *         mutex with "gil", as CPython's os.fork() holds the GIL); each child
 *         chdir()s to fork-<n>/ (created by the parent) and abort()s there at once, so the
 *         kernel leaves its core in that directory. The parent waits for each child.
 * Prints "addr ring=0x.. cur=0x.. tids=0x.. sites=0x..\n" on stdout at start, then (fork)
 * one line "fork <n> <pid> <wait status>\n" per child; runs until killed.
 *
 * killer_cur/killer_tids are plain volatile words read only by a reader of the stopped or
 * dead process, never by another thread: they are not a synchronisation protocol.
 */
#define _GNU_SOURCE
#include "pyref/ring.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64
#define NSITES 8

/* Read by the test from the dead process's memory. */
volatile uint64_t killer_cur[MAX_THREADS]; /* write under way on thread t; ~0: none yet */
volatile uint64_t killer_tids[MAX_THREADS]; /* thread t's kernel tid; 0 until it runs */

#define SITE(n) {PYREF_SITE_MAGIC, 100 + n, "killer.c", "writer", "Py_INCREF"}
const struct pyref_site killer_sites[NSITES] = {SITE(0), SITE(1), SITE(2), SITE(3),
                                                SITE(4), SITE(5), SITE(6), SITE(7)};

static pthread_mutex_t gil = PTHREAD_MUTEX_INITIALIZER;
static int use_gil;

static uint64_t obj_of(unsigned t, uint64_t i)
{
    return (uint64_t)(t + 1) << 44 | i << 4;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The origin thread t writes at position i (i % 8 == 5 or 6): op, container, count, index. */
static void killer_origin(unsigned t, uint64_t i, unsigned *op, uint64_t *container,
                          int64_t *count, int64_t *index)
{
    int odd = (i / 8) % 2;
    *container = ((uint64_t)(t + 1) << 40 | i << 3) & PYREF_ORIGIN_PTR_MASK;
    if (i % 8 == 6) {
        *op = PYREF_OP_STEAL;
        *count = (1 << 20) + (int64_t)(i % 4096);
        *index = (int64_t)(i % 1000) - 1;
        return;
    }
    *op = odd ? PYREF_OP_BORROW : PYREF_OP_STEAL;
    *count = odd ? 1 + (int64_t)(i % 255) : 256 + (int64_t)(i % 100000);
    *index = odd ? (int64_t)(i % 100000) - 1 : (int64_t)(i % 254) - 1;
}

/* Thread t's write number i (its position in the thread's ring); at i % 8 == 6 a write of
 * two slots, i and i + 1. */
static inline void write_one(unsigned t, uint64_t i)
{
    uint64_t obj = obj_of(t, i);
    const struct pyref_site *site = &killer_sites[(i * 3 + t) % NSITES];
    switch (i % 8) {
    case 0:
        pyref_record((void *)obj, site, (int64_t)mix(obj), PYREF_OP_INCREF, 1);
        break;
    case 1:
        pyref_record((void *)obj, site, (int64_t)mix(obj), PYREF_OP_DECREF, -1);
        break;
    case 2:
        pyref_record((void *)obj, site, (int64_t)mix(obj), PYREF_OP_INCREF | PYREF_OP_IMMORTAL,
                     0);
        break;
    case 3:
        pyref_record((void *)obj, site, 1, PYREF_OP_DEALLOC, -1);
        break;
    case 4:
        pyref_record_aux((void *)obj, 1 + i % 7, (int64_t)(mix(obj) ^ 0xA5));
        break;
    case 5: {
        unsigned op;
        uint64_t container;
        int64_t count, index;
        killer_origin(t, i, &op, &container, &count, &index);
        uint32_t code = pyref_origin_code(count, index);
        pyref_record((void *)obj, site, (int64_t)pyref_origin_word(container, code), op,
                     (int)(int8_t)(uint8_t)(code & 0xFF));
        break;
    }
    default: {
        unsigned op;
        uint64_t container;
        int64_t count, index;
        killer_origin(t, i, &op, &container, &count, &index);
        pyref_record_pair((void *)obj, site, (int64_t)container, op, 0,
                          (const void *)(uintptr_t)index, PYREF_AUX_ORIGIN, count);
        break;
    }
    }
}

/* Thread t's writes number from .. to - 1. */
static void write_range(unsigned t, uint64_t from, uint64_t to)
{
    for (uint64_t i = from; i < to; i++) {
        if (i % 8 == 7)
            continue; /* written with i - 1 */
        if (use_gil)
            pthread_mutex_lock(&gil);
        killer_cur[t] = i;
        write_one(t, i);
        if (use_gil)
            pthread_mutex_unlock(&gil);
    }
}

static void *writer(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    killer_tids[t] = (uint64_t)syscall(SYS_gettid);
    write_range(t, 0, UINT64_MAX);
    return NULL;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: killer NTHREADS [gil] [fork]\n");
        return 2;
    }
    unsigned n = (unsigned)atoi(argv[1]);
    int forking = 0, seconds = -1;
    for (int a = 2; a < argc; a++) {
        use_gil |= strcmp(argv[a], "gil") == 0;
        forking |= strcmp(argv[a], "fork") == 0;
        if (strncmp(argv[a], "for=", 4) == 0)
            seconds = atoi(argv[a] + 4);
    }
    if (n < 1 || n + forking > MAX_THREADS) {
        fprintf(stderr, "killer: 1..%d threads\n", MAX_THREADS - forking);
        return 2;
    }
    for (unsigned t = 0; t < MAX_THREADS; t++)
        killer_cur[t] = UINT64_MAX;
    printf("addr ring=%p cur=%p tids=%p sites=%p\n", (void *)&pyref_ring,
           (void *)killer_cur, (void *)killer_tids, (void *)killer_sites);
    fflush(stdout);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024); /* small cores */
    for (unsigned t = 0; t < n; t++) {
        pthread_t th;
        if (pthread_create(&th, &attr, writer, (void *)(uintptr_t)t) != 0) {
            perror("pthread_create");
            return 2;
        }
    }
    if (!forking) {
        if (seconds >= 0) {
            sleep_us(seconds * 1000000L);
            exit(0); /* the writers are still writing: exit() does not wait for them */
        }
        for (;;)
            pause();
    }
    /* The main thread is writer n: it records a little between forks, so its descriptor
     * is live and the child's FORK record lands after its records. */
    unsigned me = n;
    killer_tids[me] = (uint64_t)syscall(SYS_gettid);
    for (unsigned k = 0;; k++) {
        write_range(me, 1000 * (uint64_t)k, 1000 * (uint64_t)(k + 1));
        char dir[32];
        snprintf(dir, sizeof dir, "fork-%u", k);
        if (mkdir(dir, 0755) != 0) {
            perror("mkdir");
            return 2;
        }
        fflush(stdout);
        if (use_gil) /* as CPython's os.fork(): the forking thread holds the GIL */
            pthread_mutex_lock(&gil);
        pid_t pid = fork();
        if (pid == 0) {
            if (chdir(dir) != 0)
                _exit(3);
            abort();
        }
        if (use_gil)
            pthread_mutex_unlock(&gil);
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        int status;
        waitpid(pid, &status, 0);
        printf("fork %u %d %d\n", k, (int)pid, status);
        fflush(stdout);
        sleep_us(1000 + rand() % 4000);
    }
}
