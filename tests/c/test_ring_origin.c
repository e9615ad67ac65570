/*
 * test_ring_origin.c — format 2's origin word (docs/ring-format.md, "Origin records"):
 * pyref_origin_code() and pyref_origin_word() against the vectors the Python reader is
 * tested with (tests/unit/test_decode_v2.py GOLDEN), every boundary of both code layouts,
 * and a record written with them: its refcnt and delta bytes hold the word and the code's
 * low byte, the op and commit as any record's.
 */
#include "check.h"

struct vec {
    int64_t count, index;
    uint32_t code;
};

/* Keep in step with GOLDEN in tests/unit/test_decode_v2.py. */
static const struct vec golden[] = {
    {1, -1, 1u << 18},
    {3, 5, 3u << 18 | 6},
    {255, (1 << 18) - 2, 255u << 18 | ((1u << 18) - 1)},
    {256, 254, 1u << 26 | 256u << 8 | 255},
    {(1 << 18) - 1, -1, 1u << 26 | ((1u << 18) - 1) << 8},
    {256, 255, 0},
    {1 << 18, 0, 0},
    {0, 0, 0},
    {-3, 1, 0},
    {5, -2, 0},
    {5, 1 << 18, 0},
};

/* The reader's decoding of a code (ringformat.origin_fields), for the round trip. */
static void fields_of(uint32_t code, int64_t *count, int64_t *index)
{
    if (code >> 26) {
        *count = code >> 8 & 0x3FFFF;
        *index = (int64_t)(code & 0xFF) - 1;
    } else {
        *count = code >> 18 & 0xFF;
        *index = (int64_t)(code & 0x3FFFF) - 1;
    }
}

int main(void)
{
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++)
        CHECK_EQ_U64(pyref_origin_code(golden[i].count, golden[i].index), golden[i].code,
                     "golden code");
    /* every count/index pair near the layouts' edges round-trips or does not fit */
    static const int64_t counts[] = {-1, 0, 1, 2, 254, 255, 256, 257, (1 << 18) - 1, 1 << 18,
                                     INT64_MAX};
    static const int64_t indexes[] = {INT64_MIN, -2, -1, 0, 1, 253, 254, 255,
                                      (1 << 18) - 2, (1 << 18) - 1, INT64_MAX};
    for (size_t a = 0; a < sizeof counts / sizeof counts[0]; a++)
        for (size_t b = 0; b < sizeof indexes / sizeof indexes[0]; b++) {
            int64_t c = counts[a], x = indexes[b], c2, x2;
            uint32_t code = pyref_origin_code(c, x);
            int fits = c >= 1 && ((c <= 255 && x >= -1 && x < (1 << 18) - 1) ||
                                  (c < (1 << 18) && x >= -1 && x < 255));
            CHECK(!!code == fits, "count %lld index %lld: code %#x", (long long)c,
                  (long long)x, code);
            CHECK(code < 1u << 27, "code %#x wider than 27 bits", code);
            if (code) {
                fields_of(code, &c2, &x2);
                CHECK(c2 == c && x2 == x, "round trip %lld %lld -> %lld %lld", (long long)c,
                      (long long)x, (long long)c2, (long long)x2);
            }
        }
    /* the word: the container in bits 3-47, the code's bits 8-10 and 11-26 around it */
    uint64_t cont = 0x00007F12345678F8ULL;
    uint32_t code = pyref_origin_code(300, 17);
    uint64_t w = pyref_origin_word(cont, code);
    CHECK_EQ_U64(w & PYREF_ORIGIN_PTR_MASK, cont, "container bits");
    CHECK_EQ_U64((w >> 48) << 11 | (w & 7) << 8 | (code & 0xFF), code, "code bits");
    /* a record written with them */
    static const struct pyref_site site = {PYREF_SITE_MAGIC, 7, "t.c", "f", "PyTuple_GetItem"};
    int obj;
    CHECK(pyref_record(&obj, &site, (int64_t)w, PYREF_OP_BORROW, (int)(int8_t)(code & 0xFF)),
          "record written");
    struct pyref_thread *t = pyref_tls_thread;
    const struct pyref_record *r = &t->ring[(t->head - 1) & t->mask];
    CHECK_EQ_U64(r->obj, (uintptr_t)&obj, "obj");
    CHECK_EQ_U64((uint64_t)r->refcnt, w, "refcnt = origin word");
    CHECK_EQ_U64((uint8_t)r->u.c.delta, code & 0xFF, "delta = code's low byte");
    CHECK_EQ_U64(r->u.c.op, PYREF_OP_BORROW, "op");
    CHECK_EQ_U64(pyref_ring->version, 2, "format version");
    return check_done();
}
