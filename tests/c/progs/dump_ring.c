/*
 * dump_ring.c — writes a fixed history of records through the public ring API, then dumps
 * the ring set (header, thread table, the thread's ring) to a file: a real image of
 * whatever format the library (and ring.h) it is built with writes. tests/unit/data/
 * ring_v1.img was made with it against the format-1 library and header (pyref at 0fe9f12),
 * ring_v2.img against format 2's, so that the reader's tests keep a real image of each
 * (tests/unit/test_decode_v2.py: "a core of the previous format still reads"):
 *
 *   cc -O2 -IOLD/c_helpers/include tests/c/progs/dump_ring.c OLD/build/libpyref.a \
 *       -pthread -o dump_ring && PYREF_RING_RECORDS=256 PYREF_RING_THREADS=2 \
 *       ./dump_ring tests/unit/data/ring_v1.img
 *
 * The history is that of a C-API origin capture as format 1's wrappers wrote it: a BORROW
 * and a STEAL each followed by its AUX CONTAINER in one write (pyref_record_pair), a NEW,
 * INCREF/DECREF/DEALLOC, a MARK. Its addresses are fake (0x7f00000010.. objects). The file
 * is "PYREFIMG" then, per region, its address and length (8 bytes each, little-endian) and
 * its bytes.
 */
#include "pyref/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct pyref_site s1 = {PYREF_SITE_MAGIC, 10, "dump.c", "f", "PyTuple_GetItem"};
static const struct pyref_site s2 = {PYREF_SITE_MAGIC, 11, "dump.c", "f", "PyList_SetItem"};
static const struct pyref_site s3 = {PYREF_SITE_MAGIC, 12, "dump.c", "f", "Py_INCREF"};

/* A BORROW/STEAL as the C-API wrappers of the library's format write it
 * (pyref_capi_prelude.h: pyref__origin_write in format 2). */
static void origin(const void *obj, const struct pyref_site *site, int64_t count, unsigned op,
                   const void *container, int64_t index)
{
#if PYREF_FORMAT_VERSION >= 2
    uint32_t code = pyref_origin_code(count, index);
    if (code)
        pyref_record(obj, site, (int64_t)pyref_origin_word((uintptr_t)container, code), op,
                     (int)(int8_t)(uint8_t)(code & 0xFF));
    else
        pyref_record_pair(obj, site, (int64_t)(uintptr_t)container, op, 0,
                          (const void *)(uintptr_t)index, PYREF_AUX_ORIGIN, count);
#else
    pyref_record_pair(obj, site, count, op, 0, container, 1, index);
#endif
}

static void region(FILE *f, const void *addr, uint64_t len)
{
    uint64_t a = (uint64_t)(uintptr_t)addr;
    fwrite(&a, 8, 1, f);
    fwrite(&len, 8, 1, f);
    fwrite(addr, 1, len, f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: dump_ring FILE\n");
        return 2;
    }
    const char *o = (const char *)0x7f0000001000, *tup = (const char *)0x7f0000002000;
    pyref_record(o, &s3, 1, PYREF_OP_NEW, 0);
    origin(o + 0x40, &s1, 3, PYREF_OP_BORROW, tup, 2);
    pyref_record(o + 0x40, &s3, 3, PYREF_OP_INCREF, 1);
    origin(o + 0x40, &s2, 4, PYREF_OP_STEAL, tup + 0x40, 0);
    origin(o + 0x80, &s1, 0xFFFFFFFF, PYREF_OP_BORROW | PYREF_OP_IMMORTAL, tup, -1);
    pyref_mark("test:start dump");
    pyref_record(o, &s3, 1, PYREF_OP_DEALLOC, -1);
    struct pyref_ring_header *h = pyref_ring;
    FILE *f = fopen(argv[1], "wb");
    if (f == NULL || h == NULL)
        return 1;
    fwrite("PYREFIMG", 1, 8, f);
    region(f, h, h->header_size);
    for (uint32_t i = 0; i < h->max_threads; i++)
        if (h->threads[i].ring != NULL)
            region(f, h->threads[i].ring, (uint64_t)h->capacity * PYREF_RECORD_SIZE);
    return fclose(f) != 0;
}
