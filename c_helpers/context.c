/*
 * context.c — Python context of transitions: which code object and instruction of the
 * calling Python frame each record happened under, as PYCTX AUX records.
 *
 * The frame is read by the shim (pyref_hooks.h, which knows the interpreter's layout) on
 * every transition; this file holds what is the same for every interpreter: the on/off
 * decision, the per-thread cache that lets the shim skip the record when nothing changed,
 * the writer of the AUX record, and the search for the interpreter's thread-local tstate
 * pointer (3.12+), which turns "the current thread state" from a call through the PLT and
 * __tls_get_addr into one %fs-relative load.
 *
 * A PYCTX record is the context of the record it is attached to and of every later record
 * of the same thread up to the next PYCTX. It is written when the (code, instruction) pair
 * differs from the thread's last one, and again when the last one is more than 1/8 of the
 * ring behind (so every record of the newest 7/8 of a ring has its context in the ring).
 */
#define _GNU_SOURCE
#include "pyref/hooks.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

__thread struct pyref_pyctx_tls pyref_tls_pyctx __attribute__((tls_model("initial-exec")));
intptr_t pyref_pyctx_tss_off;

static int pyctx_decided;

void pyref_pyctx_emit(const void *code, int64_t offset, const void *key_code,
                      const void *key_instr)
{
    struct pyref_thread *t = pyref_tls_thread;
    struct pyref_pyctx_tls *c = &pyref_tls_pyctx;
    if (t->head == 0)
        return; /* no descriptor or no record yet: nothing to attach to */
    uint64_t before = t->head;
    pyref_record_aux(code, PYREF_AUX_PYCTX, offset);
    if (t->head == before)
        return; /* dropped (re-entry): try again next time */
    c->code = key_code;
    c->instr = key_instr;
    c->pos = t->head;
}

/* dl_iterate_phdr callback: finds the PT_TLS segment of the module whose load address is
 * data->base. */
struct tls_query {
    uintptr_t base;
    size_t size;
    size_t modid;
};

static int tls_segment(struct dl_phdr_info *info, size_t len, void *arg)
{
    (void)len;
    struct tls_query *q = (struct tls_query *)arg;
    if ((uintptr_t)info->dlpi_addr != q->base)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_TLS) {
            q->size = info->dlpi_phdr[i].p_memsz;
            q->modid = info->dlpi_tls_modid;
        }
    return 1;
}

/* The offset from the thread pointer of the word holding `tstate` in the TLS block of the
 * module defining `getter`, or 0. Accepts only a static TLS block (within 1 MiB below the
 * thread pointer, where x86-64 glibc puts the TLS of modules loaded at start-up: the same
 * offset then holds for every thread) and exactly one matching word. */
static intptr_t find_tss_off(const void *getter, const void *tstate)
{
#if defined(__x86_64__) && defined(__GLIBC__)
    Dl_info info;
    if (tstate == NULL || dladdr(getter, &info) == 0 || info.dli_fbase == NULL)
        return 0;
    struct tls_query q = {(uintptr_t)0, 0, 0};
    /* dlpi_addr is the load bias, dli_fbase the mapped base: equal for PIC shared objects,
     * and for a PIE executable; a non-PIE executable has bias 0. */
    q.base = (uintptr_t)info.dli_fbase;
    dl_iterate_phdr(tls_segment, &q);
    if (q.modid == 0) {
        q.base = 0;
        dl_iterate_phdr(tls_segment, &q);
    }
    if (q.modid == 0 || q.size == 0 || q.size > (1u << 16))
        return 0;
    struct { unsigned long module, offset; } ti = {q.modid, 0}; /* the ABI's tls_index */
    extern void *__tls_get_addr(void *);
    char *block = (char *)__tls_get_addr(&ti);
    char *tp;
    __asm__("mov %%fs:0, %0" : "=r"(tp));
    intptr_t base_off = block - tp;
    if (block == NULL || base_off >= 0 || base_off < -(intptr_t)(1 << 20))
        return 0;
    intptr_t found = 0;
    int hits = 0;
    for (size_t i = 0; i + sizeof(void *) <= q.size; i += sizeof(void *)) {
        const void *w;
        memcpy(&w, block + i, sizeof w);
        if (w == tstate) {
            hits++;
            found = base_off + (intptr_t)i;
        }
    }
    return hits == 1 ? found : 0;
#else
    (void)getter;
    (void)tstate;
    return 0;
#endif
}

int pyref_pyctx_init(const void *getter, const void *tstate, int want_tss)
{
    if (pyctx_decided)
        return pyref_hot.pyctx_on;
    pyctx_decided = 1;
    const char *env = getenv("PYREF_PYCONTEXT");
    pyref_ring_init(); /* libpyref.a: our constructor may run before ring.c's */
    struct pyref_ring_header *h = __atomic_load_n(&pyref_ring, __ATOMIC_ACQUIRE);
    if (env == NULL || strcmp(env, "1") != 0 || h == NULL || (h->flags & PYREF_FLAG_DISABLED))
        return 0;
    if (want_tss)
        pyref_pyctx_tss_off = find_tss_off(getter, tstate);
    pyref_hooks_set(PYREF_HOOK_PYCTX, 0);
    __atomic_store_n(&pyref_hot.pyctx_on, 1, __ATOMIC_RELEASE);
    pyref_hot_retarget(); /* every record now takes the shim's out-of-line path */
    return 1;
}
