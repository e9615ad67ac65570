/*
 * tests/c/check.h — the small harness shared by the ring's C unit tests (tests/c/test_*.c).
 *
 * Each test is one program: it counts CHECK()s, prints every failure on stderr with its
 * file:line, and ends with one line "N passed, N failed" (exit status 1 on any failure).
 * The ring is created by libpyref's constructor from the environment, so a test that needs
 * another environment (PYREF_RING_RECORDS, PYREF=off, ...) runs itself again in a child
 * with spawn_self(); the child's counts come back through a pipe and are added to the
 * parent's, so one program still prints one closing line.
 *
 * The tests read the ring the way a reader does, through the exported `pyref_ring`.
 */
#ifndef PYREF_TEST_CHECK_H
#define PYREF_TEST_CHECK_H

#define _GNU_SOURCE
#include "pyref/ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long check_passed, check_failed;

/* Counts one check; on failure prints the condition and a printf-style explanation. */
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (cond) {                                                                            \
            check_passed++;                                                                    \
        } else {                                                                               \
            check_failed++;                                                                    \
            fprintf(stderr, "%s:%d: FAIL (%s): ", __FILE__, __LINE__, #cond);                  \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
        }                                                                                      \
    } while (0)

#define CHECK_EQ_U64(a, b, what)                                                               \
    CHECK((uint64_t)(a) == (uint64_t)(b), "%s: got %llu (0x%llx), want %llu (0x%llx)", what,   \
          (unsigned long long)(a), (unsigned long long)(a), (unsigned long long)(b),           \
          (unsigned long long)(b))

#define RESULT_FD_ENV "PYREF_TEST_RESULT_FD"

/* Ends the program's checks. In a child started by spawn_self() the counts go to the
 * parent through the result pipe; otherwise prints the closing line. Returns the exit
 * status: 0 when nothing failed, else 1. */
static inline int check_done(void)
{
    const char *fd = getenv(RESULT_FD_ENV);
    if (fd != NULL) {
        dprintf(atoi(fd), "%lu %lu\n", check_passed, check_failed);
    } else {
        printf("%lu passed, %lu failed\n", check_passed, check_failed);
        fflush(stdout);
    }
    return check_failed ? 1 : 0;
}

/*
 * Runs this program again (/proc/self/exe MODE) in a child with the environment changed
 * by `env` (a NULL-terminated list of "NAME=VALUE" to set or "NAME" to unset) and waits
 * for it. The child's stderr is copied into `err` (NUL-terminated, truncated to errsz;
 * may be NULL) and echoed to ours when the child failed. The child's check counts are
 * added to ours; a child that dies, or exits without reporting, counts as one failure.
 * PYREF_TEST_VERBOSE=1 echoes every child's stderr.
 * Returns the child's exit status, or -1 if it died of a signal.
 */
static inline int spawn_self(const char *mode, const char *const *env, char *err, size_t errsz)
{
    int errpipe[2], respipe[2];
    if (pipe(errpipe) != 0 || pipe(respipe) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        for (const char *const *e = env; e && *e; e++) {
            const char *eq = strchr(*e, '=');
            if (eq == NULL) {
                unsetenv(*e);
            } else {
                char name[128];
                snprintf(name, sizeof name, "%.*s", (int)(eq - *e), *e);
                setenv(name, eq + 1, 1);
            }
        }
        char fdbuf[16];
        snprintf(fdbuf, sizeof fdbuf, "%d", respipe[1]);
        setenv(RESULT_FD_ENV, fdbuf, 1);
        dup2(errpipe[1], 2);
        close(errpipe[0]);
        close(errpipe[1]);
        close(respipe[0]);
        execl("/proc/self/exe", "child", mode, (char *)NULL);
        perror("exec");
        _exit(127);
    }
    close(errpipe[1]);
    close(respipe[1]);
    char buf[8192], chunk[1024];
    size_t used = 0;
    ssize_t n;
    while ((n = read(errpipe[0], chunk, sizeof chunk)) > 0) { /* drain all, keep the head */
        size_t k = (size_t)n < sizeof buf - 1 - used ? (size_t)n : sizeof buf - 1 - used;
        memcpy(buf + used, chunk, k);
        used += k;
    }
    buf[used] = '\0';
    close(errpipe[0]);
    char res[64] = "";
    n = read(respipe[0], res, sizeof res - 1);
    res[n > 0 ? n : 0] = '\0';
    close(respipe[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    unsigned long p = 0, f = 0;
    int reported = sscanf(res, "%lu %lu", &p, &f) == 2;
    check_passed += p;
    check_failed += f;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    CHECK(reported && code == (f ? 1 : 0), "child '%s' exited with status 0x%x, reported '%s'",
          mode, status, res);
    if (code != 0 || !reported || (getenv("PYREF_TEST_VERBOSE") && used > 0))
        fprintf(stderr, "--- stderr of child '%s':\n%s---\n", mode, buf);
    if (err != NULL)
        snprintf(err, errsz, "%s", buf);
    return code;
}

/* Kernel thread id of the calling thread. */
/* The calling thread's descriptor, NULL while it has none (pyref_thread_none). */
static inline struct pyref_thread *test_thread(void)
{
    return pyref_tls_thread == &pyref_thread_none ? NULL : pyref_tls_thread;
}

static inline uint64_t test_gettid(void)
{
    return (uint64_t)syscall(SYS_gettid);
}

/* Runs fn(arg) in a new thread and joins it: the thread's pyref descriptor is EXITED when
 * this returns (the key destructor runs before the join completes). */
static inline void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t th;
    if (pthread_create(&th, NULL, fn, arg) != 0) {
        perror("pthread_create");
        exit(2);
    }
    pthread_join(th, NULL);
}

/* A record as the tests expect it, field by field. */
struct want {
    uint64_t obj, site;
    int64_t refcnt;
    uint32_t seq;
    uint8_t op;
    int8_t delta;
    uint16_t tid;
};

/* Fields of a committed record, read as a stopped-process reader would. */
static inline struct want record_read(const struct pyref_record *r)
{
    struct want w = {r->obj,    r->site,      r->refcnt, r->u.c.seq,
                     r->u.c.op, r->u.c.delta, r->u.c.tid};
    return w;
}

/* 1 when r holds exactly w (and is committed); else 0 and a description in why. */
static inline int record_is(const struct pyref_record *r, const struct want *w, char *why,
                            size_t n)
{
    struct want g = record_read(r);
    if (r->u.commit != 0 && g.obj == w->obj && g.site == w->site && g.refcnt == w->refcnt &&
        g.seq == w->seq && g.op == w->op && g.delta == w->delta && g.tid == w->tid)
        return 1;
    snprintf(why, n,
             "got {obj %#llx site %#llx refcnt %lld seq %u op %u delta %d tid %u commit %#llx}"
             " want {obj %#llx site %#llx refcnt %lld seq %u op %u delta %d tid %u}",
             (unsigned long long)g.obj, (unsigned long long)g.site, (long long)g.refcnt, g.seq,
             g.op, g.delta, g.tid, (unsigned long long)r->u.commit, (unsigned long long)w->obj,
             (unsigned long long)w->site, (long long)w->refcnt, w->seq, w->op, w->delta,
             w->tid);
    return 0;
}

/* The descriptor index of t in the header's thread table. */
static inline long thread_index(const struct pyref_thread *t)
{
    return t == NULL ? -1 : (long)(t - pyref_ring->threads);
}

#endif /* PYREF_TEST_CHECK_H */
