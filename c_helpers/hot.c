/*
 * hot.c — the shared state the shim reads after every record (struct pyref_hot,
 * pyref/hooks.h): the interest table, which the shim writes and the free hook (frees.c)
 * reads, and the table the shim's per-record test reads, which PYCTX records (context.c)
 * retarget. Both those files use it; it uses neither.
 *
 * Workload: written at load time only (the constructor below, and pyref_hot_retarget()
 * when PYCTX records are switched on); read lock-free on every transition.
 */
#define _GNU_SOURCE
#include "pyref/hooks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

_Static_assert(sizeof(struct pyref_interest) == 16, "interest_mask is a byte mask of 16-byte entries");

#define PYREF_INTEREST_DEFAULT (1u << 18) /* 4 MiB of address space before two collide */
#define PYREF_INTEREST_MIN (1u << 10)
#define PYREF_INTEREST_MAX (1u << 24)

/* Until hot_init() maps the table: one dummy entry (mask 0), so the shim never tests. */
static struct pyref_interest interest_dummy[1];
struct pyref_hot pyref_hot = {interest_dummy, 0, interest_dummy, 0, 0};

/* The table of zeros the shim's test reads while PYCTX records are on (pyref/hooks.h). */
static struct pyref_interest *zero_table;
static uint64_t zero_mask;

/* Entries, from PYREF_FREE_TABLE (power of two in [MIN, MAX]). */
static unsigned long interest_entries(void)
{
    const char *s = getenv("PYREF_FREE_TABLE");
    if (s == NULL || *s == '\0')
        return PYREF_INTEREST_DEFAULT;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < PYREF_INTEREST_MIN || v > PYREF_INTEREST_MAX ||
        (v & (v - 1)) != 0) {
        fprintf(stderr,
                "pyref: ignoring PYREF_FREE_TABLE=%s (want a power of two in %u..%u); "
                "using %u\n",
                s, PYREF_INTEREST_MIN, PYREF_INTEREST_MAX, PYREF_INTEREST_DEFAULT);
        return PYREF_INTEREST_DEFAULT;
    }
    return v;
}

/* Maps the table at library load, before any extension can record. Untouched pages cost
 * no memory; a core contains only the pages written. On failure the dummy stays. */
__attribute__((constructor)) static void hot_init(void)
{
    unsigned long n = interest_entries();
    void *p = mmap(NULL, n * sizeof(struct pyref_interest), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return;
    /* table first, then mask (readers load the mask first): a reader never pairs the new
     * mask with the 1-entry dummy */
    __atomic_store_n(&pyref_hot.interest_table, (struct pyref_interest *)p, __ATOMIC_RELEASE);
    __atomic_store_n(&pyref_hot.interest_mask, (uint64_t)(n - 1) << 4, __ATOMIC_RELEASE);
    pyref_hot_retarget();
}

void pyref_hot_retarget(void)
{
    struct pyref_interest *tab = pyref_hot.interest_table;
    uint64_t mask = pyref_hot.interest_mask;
    if (pyref_hot.pyctx_on) {
        if (zero_table == NULL || zero_mask != mask) {
            /* never written: its pages stay the kernel's shared zero page */
            void *z = mmap(NULL, (mask >> 4) * sizeof(struct pyref_interest) +
                                     sizeof(struct pyref_interest),
                           PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (z != MAP_FAILED) {
                zero_table = (struct pyref_interest *)z;
                zero_mask = mask;
            }
        }
        if (zero_table != NULL && zero_mask == mask)
            tab = zero_table; /* else PYCTX records are not written: nothing else is lost */
    }
    /* table first, then mask, as for the interest table; a table swap at equal masks is
     * safe in either order */
    __atomic_store_n(&pyref_hot.note_table, tab, __ATOMIC_RELEASE);
    __atomic_store_n(&pyref_hot.note_mask, mask, __ATOMIC_RELEASE);
}
