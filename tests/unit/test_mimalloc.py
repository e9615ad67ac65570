"""The gdb-free half of mimalloc's block lookup (gdbext/pyref/reader/mimalloc.py) on
segments built byte by byte, with the layout of CPython 3.13.5t's mi_segment_t,
mi_page_t and mi_heap_t (x86-64, debug: encoded free lists, an 8-byte padding)."""
import struct

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader import mimalloc
from pyref.reader.mimalloc import MiHeap

LAY = mimalloc.MiLayout(
    segment_size=32 << 20, slice_size=64 << 10, seg_header=57720, seg_slices=264,
    seg_cookie=(216, 8), seg_segment_size=(32, 8), seg_segment_slices=(224, 8),
    seg_info_slices=(232, 8), seg_slice_entries=(248, 8), page_size=112,
    pg_slice_count=(0, 4), pg_slice_offset=(4, 4), pg_capacity=(10, 2),
    pg_reserved=(12, 2), pg_free=(16, 8), pg_used=(24, 4), pg_block_size=(28, 4),
    pg_huge=True, pg_local_free=(32, 8), pg_keys=(40, 16), pg_xthread_free=(56, 8),
    pg_xheap=(64, 8), heap_delayed=(2848, 8), heap_keys=(2880, 16), padding=8)

MAIN_COOKIE = 0xDC6A3B1C2F9E4A6A
SEG = 0x20000000000            # mimalloc's first hinted address: 2 TiB
SLICE = LAY.slice_size
PAGE_KEYS = (0xB1C5B4678E5337EF, 0xE69A7C2C3DE2BD26)
HEAP = 0x7F0000001000
HEAP_KEYS = (0x1234567890ABCDEF, 0x0FEDCBA987654321)


def encode(p, null, keys):
    """mi_ptr_encode (internal.h): what mimalloc stores as a free block's next."""
    x = p or null
    x ^= keys[1]
    s = keys[0] % 64
    x = ((x << s) | (x >> (64 - s))) & (2 ** 64 - 1) if s else x
    return (x + keys[0]) & (2 ** 64 - 1)


class Memory:
    """Sparse memory: {start: bytearray}; reads outside raise MemoryError."""

    def __init__(self):
        self.regions = {}
        self.reads = 0

    def add(self, start, size):
        self.regions[start] = bytearray(size)

    def _at(self, addr, size):
        for s, b in self.regions.items():
            if s <= addr and addr + size <= s + len(b):
                return b, addr - s
        raise MemoryError("0x%x" % addr)

    def read(self, addr, size):
        self.reads += 1
        b, off = self._at(addr, size)
        return bytes(b[off:off + size])

    def put(self, addr, fmt, *values):
        b, off = self._at(addr, struct.calcsize(fmt))
        struct.pack_into(fmt, b, off, *values)


def segment(mem, base=SEG, slices=512, info=1, cookie=None):
    """A segment header at `base` (its first `info` slices), no spans yet."""
    mem.add(base, info * SLICE)
    mem.put(base + LAY.seg_cookie[0], "<Q", base ^ MAIN_COOKIE if cookie is None else cookie)
    mem.put(base + LAY.seg_segment_size[0], "<Q", slices * SLICE)
    mem.put(base + LAY.seg_segment_slices[0], "<Q", slices)
    mem.put(base + LAY.seg_info_slices[0], "<Q", info)
    mem.put(base + LAY.seg_slice_entries[0], "<Q", min(slices, 512))


def slice_addr(base, i):
    return base + LAY.seg_slices + i * LAY.page_size


def span(mem, first, count, bsize=0, capacity=0, reserved=0, used=0, base=SEG,
         free=0, local_free=0, thread_free=0, heap=0, data=True):
    """Span `first` (count slices) of blocks of `bsize` (0: a free span); its memory is
    added when `data`. Returns the address of its first block."""
    s = slice_addr(base, first)
    mem.put(s, "<II", count, 0)
    mem.put(s + 10, "<HH", capacity, reserved)
    mem.put(s + 16, "<QII", free, used, bsize)
    mem.put(s + 32, "<QQQQQ", local_free, PAGE_KEYS[0], PAGE_KEYS[1], thread_free, heap)
    if count > 1:   # mimalloc's back offsets: not what the lookup relies on
        mem.put(slice_addr(base, first + 1), "<II", 0, LAY.page_size)
    if data:
        mem.add(base + first * SLICE, count * SLICE)
    offset = 3 * bsize if 8 <= bsize <= 64 else bsize if bsize <= 512 else 0
    return base + first * SLICE + offset


def chain(mem, blocks, null, keys):
    """Links `blocks` into an encoded free list (the last one ends it)."""
    for b, nxt in zip(blocks, list(blocks[1:]) + [0]):
        mem.put(b, "<Q", encode(nxt, null, keys))


def heap_of(mem):
    return MiHeap(mem.read, LAY, MAIN_COOKIE)


def small_page(mem, used=10, capacity=40, **kw):
    """Segment SEG with a free span, then slice 3: a page of 64-byte blocks."""
    segment(mem)
    span(mem, 1, 2)
    return span(mem, 3, 1, bsize=64, capacity=capacity, reserved=1000, used=used, **kw)


def test_block_start_size_and_in_use():
    mem = Memory()
    start = small_page(mem)
    assert start == SEG + 3 * SLICE + 192  # small blocks start 3 blocks in
    blk = heap_of(mem).block(start + 5 * 64 + 24)
    assert blk == mimalloc.Block(start + 5 * 64, 56, "mimalloc", False)


def test_free_list_blocks_are_free():
    mem = Memory()
    start = small_page(mem)
    page = slice_addr(SEG, 3)
    blocks = [start + i * 64 for i in (7, 2, 9)]
    chain(mem, blocks, page, PAGE_KEYS)
    mem.put(page + 16, "<Q", blocks[0])
    h = heap_of(mem)
    assert [h.block(b + 8).free for b in blocks] == [True, True, True]
    assert h.block(start + 3 * 64).free is False


def test_local_and_thread_free_lists():
    mem = Memory()
    start = small_page(mem)
    page = slice_addr(SEG, 3)
    local, remote = start + 4 * 64, start + 6 * 64
    chain(mem, [local], page, PAGE_KEYS)
    chain(mem, [remote], page, PAGE_KEYS)
    mem.put(page + 32, "<Q", local)
    mem.put(page + 56, "<Q", remote | 1)  # the low bits are the delayed-free state
    h = heap_of(mem)
    assert h.block(local).free is True and h.block(remote).free is True
    assert h.block(start).free is False


def test_past_capacity_and_empty_page_are_free():
    mem = Memory()
    start = small_page(mem, capacity=8)
    assert heap_of(mem).block(start + 8 * 64).free is True   # never handed out
    assert heap_of(mem).block(start + 7 * 64).free is False
    mem2 = Memory()
    start = small_page(mem2, used=0)
    assert heap_of(mem2).block(start).free is True


def test_damaged_free_list_cannot_say():
    mem = Memory()
    start = small_page(mem)
    page = slice_addr(SEG, 3)
    mem.put(page + 16, "<Q", start + 64)
    mem.put(start + 64, "<Q", encode(start + 64 * 5 + 3, page, PAGE_KEYS))  # misaligned
    h = heap_of(mem)
    assert h.block(start + 64).free is True
    assert h.block(start + 2 * 64).free is None  # the rest of the list is unknown


def test_heap_delayed_free_list():
    mem = Memory()
    start = small_page(mem, heap=HEAP)
    mem.add(HEAP, 4096)
    mem.put(HEAP + LAY.heap_keys[0], "<QQ", *HEAP_KEYS)
    delayed = [start + 11 * 64, start + 12 * 64]
    chain(mem, delayed, HEAP, HEAP_KEYS)
    mem.put(HEAP + LAY.heap_delayed[0], "<Q", delayed[0])
    h = heap_of(mem)
    assert [h.block(b).free for b in delayed] == [True, True]
    assert h.block(start + 13 * 64).free is False


def test_block_offsets_by_size_class():
    mem = Memory()
    segment(mem)
    a = span(mem, 1, 1, bsize=512, capacity=10, reserved=100, used=1)
    b = span(mem, 2, 8, bsize=4096, capacity=10, reserved=100, used=1)
    assert a == SEG + SLICE + 512 and b == SEG + 2 * SLICE
    h = heap_of(mem)
    assert h.block(a + 513).start == a + 512
    assert h.block(b + 3 * SLICE + 5).start == b + 3 * SLICE - 3 * SLICE % 4096
    assert h.block(SEG + SLICE + 100) is None  # the span's head before its first block


def test_header_and_free_span_and_outside():
    mem = Memory()
    small_page(mem)
    h = heap_of(mem)
    blk = h.block(slice_addr(SEG, 3) + 16)   # a page's free pointer: metadata
    assert blk.allocator == mimalloc.METADATA and blk.start == SEG
    assert h.block(SEG + SLICE + 8) is None       # the free span
    assert h.block(SEG + 100 * SLICE) is None     # past the spans the header lists
    assert h.block(SEG - 8) is None               # below: no segment


def test_wrong_cookie_or_no_cookie_is_not_a_segment():
    mem = Memory()
    segment(mem, cookie=SEG ^ MAIN_COOKIE ^ 1)
    start = span(mem, 3, 1, bsize=64, capacity=40, reserved=1000, used=1)
    assert heap_of(mem).block(start) is None
    mem2 = Memory()
    start = small_page(mem2)
    assert MiHeap(mem2.read, LAY, 0).block(start) is None  # mimalloc never started


def huge_segment(mem, mapped_whole=True):
    """A 96 MiB huge segment at SEG + 32 MiB, one block; its memory at each 32 MiB step
    (a real one is mapped whole). Returns (segment, block start)."""
    base = SEG + (32 << 20)
    segment(mem, base=base, slices=3 * 512)
    for step in (1, 2) if mapped_whole else (2,):
        mem.add(base + (step << 25), 4096)
    start = span(mem, 1, 3 * 512 - 1, bsize=mimalloc.HUGE_BLOCK, capacity=1, reserved=1,
                 used=1, base=base, data=False)
    return base, start


def test_huge_segment_found_below_the_word():
    mem = Memory()
    base, start = huge_segment(mem)
    blk = heap_of(mem).block(base + (64 << 20) + 16)   # 64 MiB in
    assert blk == mimalloc.Block(start, (3 * 512 - 1) * SLICE - 8, "mimalloc", False)


def test_unmapped_candidate_ends_the_walk_back():
    mem = Memory()
    base, _ = huge_segment(mem, mapped_whole=False)
    h = heap_of(mem)
    assert h.block(base + (64 << 20) + 16) is None  # a hole: not one segment's memory
    assert mem.reads == 2   # the word's own candidate, then the hole below it


def test_segment_read_once_per_heap():
    mem = Memory()
    start = small_page(mem)
    h = heap_of(mem)
    h.block(start)
    n = mem.reads
    h.block(start + 64)
    h.block(start + 128)
    assert mem.reads == n   # the segment's header and the page's free set are kept


def test_decode_inverts_encode():
    page = slice_addr(SEG, 3)
    for p in (SEG + 12345 * 16, 0x7F12345678F0):
        assert mimalloc.decode(encode(p, page, PAGE_KEYS), page, PAGE_KEYS) == p
    assert mimalloc.decode(encode(0, page, PAGE_KEYS), page, PAGE_KEYS) is None
    assert mimalloc.decode(0x1234, page, None) == 0x1234  # a build without encoding
    assert mimalloc.decode(0, page, None) is None
