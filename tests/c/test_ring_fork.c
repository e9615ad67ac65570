/*
 * test_ring_fork.c — the ring across fork() (docs/ring-format.md, "fork()").
 *
 * The parent has a recording main thread, a live recording worker and an exited thread.
 * In the child: pid is the child's, forks counts 1 (2 in a grandchild), the worker's
 * descriptor is EXITED with its history kept, the forking thread's descriptor is live with
 * the child's tid and ends with a FORK record (obj = parent pid, refcnt = child pid, the
 * next seq), and recording goes on. The parent's header and rings are unchanged.
 * Also a fork from a thread that never recorded: the child's header is updated the same
 * way and every inherited live descriptor is EXITED.
 */
#include "check.h"

#include <semaphore.h>

static sem_t recorded, release;

static void *worker(void *arg)
{
    unsigned n = (unsigned)(uintptr_t)arg;
    for (unsigned i = 0; i < n; i++)
        pyref_record((void *)(uintptr_t)(0xb000 + i), NULL, 1, PYREF_OP_INCREF, 1);
    sem_post(&recorded);
    sem_wait(&release);
    return NULL;
}

static void *record_three(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        pyref_record((void *)(uintptr_t)(0xc000 + i), NULL, 1, PYREF_OP_INCREF, 1);
    return NULL;
}

/* Runs fn() in a fork child with fresh counters and adds the child's counts to ours. */
static void in_fork_child(void (*fn)(pid_t parent, void *), void *arg)
{
    int res[2];
    if (pipe(res) != 0) {
        perror("pipe");
        exit(2);
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(res[0]);
        check_passed = check_failed = 0;
        fn(parent, arg);
        dprintf(res[1], "%lu %lu\n", check_passed, check_failed);
        _exit(0);
    }
    close(res[1]);
    char buf[64] = "";
    ssize_t n = read(res[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(res[0]);
    int status;
    waitpid(pid, &status, 0);
    unsigned long p = 0, f = 0;
    CHECK(sscanf(buf, "%lu %lu", &p, &f) == 2 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "fork child status 0x%x reported '%s'", status, buf);
    check_passed += p;
    check_failed += f;
}

struct snapshot {
    struct pyref_ring_header hdr;
    struct pyref_thread threads[4];
    struct pyref_record ring0[256];
};

static void take(struct snapshot *s)
{
    memcpy(&s->hdr, pyref_ring, sizeof s->hdr);
    memcpy(s->threads, pyref_ring->threads, sizeof s->threads);
    memcpy(s->ring0, pyref_ring->threads[0].ring, sizeof s->ring0);
}

/* In the child of the recording main thread. */
static void child_of_main(pid_t parent, void *arg)
{
    const struct snapshot *before = arg;
    struct pyref_ring_header *h = pyref_ring;
    struct pyref_thread *self = pyref_tls_thread, *w = &h->threads[1], *x = &h->threads[2];
    CHECK_EQ_U64(h->pid, getpid(), "child header pid");
    CHECK_EQ_U64(h->forks, before->hdr.forks + 1, "child forks");
    CHECK(self == &h->threads[0] && self->state == PYREF_THREAD_LIVE &&
              self->os_tid == test_gettid() && self->busy == 0,
          "forking thread: descriptor %ld state %u os_tid %llu (want %llu)", thread_index(self),
          self ? self->state : 0, (unsigned long long)(self ? self->os_tid : 0),
          (unsigned long long)test_gettid());
    CHECK(w->state == PYREF_THREAD_EXITED && w->head == before->threads[1].head &&
              w->ring[0].obj == 0xb000,
          "worker in the child: state %u head %llu", w->state, (unsigned long long)w->head);
    CHECK(x->state == PYREF_THREAD_EXITED && x->head == 3, "exited thread: state %u", x->state);

    /* The FORK record: last on the forking thread, the next seq, whole. */
    CHECK_EQ_U64(self->head, before->threads[0].head + 1, "child head: one FORK record");
    CHECK_EQ_U64(h->seq, before->hdr.seq + 1, "child seq");
    struct want fork_rec = {(uint64_t)parent, 0, (int64_t)getpid(), (uint32_t)before->hdr.seq,
                            PYREF_OP_FORK,    0, self->serial};
    char why[400];
    CHECK(record_is(&self->ring[(self->head - 1) & self->mask], &fork_rec, why, sizeof why),
          "FORK record: %s", why);
    CHECK(memcmp(self->ring, before->ring0,
                 sizeof(struct pyref_record) * (before->threads[0].head & self->mask)) == 0,
          "the parent's records before the fork are not intact in the child");

    /* Recording goes on: this thread, and a new thread on a free descriptor. */
    pyref_record((void *)0xd000, NULL, 4, PYREF_OP_DECREF, -1);
    CHECK(self->head == before->threads[0].head + 2 &&
              self->ring[(self->head - 1) & self->mask].obj == 0xd000,
          "record after the fork: head %llu", (unsigned long long)self->head);
    run_thread(record_three, NULL);
    CHECK(h->threads[3].head == 3 && h->threads[3].state == PYREF_THREAD_EXITED,
          "new thread in the child: head %llu state %u", (unsigned long long)h->threads[3].head,
          h->threads[3].state);
}

/* In a grandchild: forks counts both forks and the FORK record names the child. */
static void grandchild(pid_t parent, void *arg)
{
    (void)arg;
    struct pyref_thread *self = pyref_tls_thread;
    const struct pyref_record *r = &self->ring[(self->head - 1) & self->mask];
    CHECK(pyref_ring->forks == 2 && pyref_ring->pid == (uint32_t)getpid(),
          "grandchild: forks %llu pid %u", (unsigned long long)pyref_ring->forks,
          pyref_ring->pid);
    CHECK(r->u.c.op == PYREF_OP_FORK && r->obj == (uint64_t)parent &&
              r->refcnt == (int64_t)getpid(),
          "grandchild FORK record: op %u obj %llu refcnt %lld", r->u.c.op,
          (unsigned long long)r->obj, (long long)r->refcnt);
}

static void child_then_grandchild(pid_t parent, void *arg)
{
    (void)parent;
    (void)arg;
    in_fork_child(grandchild, NULL);
}

/* In the child of a thread that never recorded. */
static void child_of_unregistered(pid_t parent, void *arg)
{
    (void)parent;
    const struct snapshot *before = arg;
    struct pyref_ring_header *h = pyref_ring;
    CHECK(h->pid == (uint32_t)getpid() && h->forks == before->hdr.forks + 1,
          "child of an unregistered thread: pid %u forks %llu", h->pid,
          (unsigned long long)h->forks);
    int live = 0;
    for (uint32_t i = 0; i < h->max_threads; i++)
        live += h->threads[i].state == PYREF_THREAD_LIVE;
    CHECK(live == 0, "%d inherited descriptors still live", live);
    CHECK(pyref_tls_thread == &pyref_thread_none, "the forking thread has a descriptor");
}

static void *fork_from_thread(void *arg)
{
    in_fork_child(child_of_unregistered, arg);
    return NULL;
}

static void child_fork(void)
{
    struct pyref_ring_header *h = pyref_ring;
    for (int i = 0; i < 5; i++) /* main: descriptor 0 */
        pyref_record((void *)(uintptr_t)(0xa000 + i), NULL, 1, PYREF_OP_INCREF, 1);
    sem_init(&recorded, 0, 0);
    sem_init(&release, 0, 0);
    pthread_t w;
    pthread_create(&w, NULL, worker, (void *)(uintptr_t)7); /* descriptor 1, stays live */
    sem_wait(&recorded);
    run_thread(record_three, NULL); /* descriptor 2, exited */

    struct snapshot before, after;
    take(&before);
    in_fork_child(child_of_main, &before);
    take(&after);
    CHECK(memcmp(&before, &after, sizeof before) == 0,
          "the parent's header, descriptors or ring changed across the fork");
    CHECK(h->pid == (uint32_t)getpid() && h->forks == 0 &&
              h->threads[1].state == PYREF_THREAD_LIVE,
          "parent after fork: pid %u forks %llu worker state %u", h->pid,
          (unsigned long long)h->forks, h->threads[1].state);

    in_fork_child(child_then_grandchild, NULL);

    take(&before);
    run_thread(fork_from_thread, &before);
    sem_post(&release);
    pthread_join(w, NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "fork") == 0) {
        child_fork();
        return check_done();
    }
    const char *env[] = {"PYREF_RING_RECORDS=256", "PYREF_RING_THREADS=8", "PYREF", NULL};
    spawn_self("fork", env, NULL, 0);
    return check_done();
}
