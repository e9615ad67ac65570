"""mimalloc's blocks (CPython 3.13+'s Objects/mimalloc/, the allocator of every object and
buffer of a free-threaded build): which block holds an address, where it starts, how big
it is, and whether mimalloc holds it as free.

No gdb here: every function takes a `read(addr, size) -> bytes` callable (pyref/errors.py:
the reader contract) and a MiLayout that inferior/mimalloc.py fills from the interpreter's
DWARF (mi_segment_t, mi_page_t, mi_heap_t); tests build both from bytes.

mimalloc 2.x in brief (Include/internal/mimalloc/mimalloc/types.h, internal.h):
- memory comes in segments aligned to MI_SEGMENT_SIZE (32 MiB on 64-bit); a segment starts
  with its mi_segment_t, which holds `cookie` = its own address ^ _mi_heap_main.cookie
  (what makes a segment recognisable) and `slices[]`, one mi_page_t per 64 KiB slice;
- the slices are tiled by spans: the segment's own header (segment_info_slices), then
  each span's first slice (slice_count slices, slice_offset 0) describes a page of blocks
  of one size (xblock_size; 0 for a free span), or a free span;
- a page's blocks start at the span's start plus a small offset (3 blocks of <= 64 bytes,
  one of <= 512); the block size includes the padding mi_padding_t at the block's end;
- free blocks are on the page's `free`, `local_free` and `xthread_free` lists (next
  pointers encoded with the page's keys when the build has them), on the owning heap's
  `thread_delayed_free` list (encoded with the heap's keys), or past `capacity` (never
  handed out). A huge block (xblock_size >= 2 GiB) spans its whole page.

Every walk is bounded; a list that leads outside its page (damaged, or read while another
thread changed it) ends there and the answer about freeness becomes None (cannot say).
"""
import struct
from collections import namedtuple

from pyref.errors import READ_ERRORS
from pyref.reader.scan import Block

_U64 = struct.Struct("<Q")

ALLOCATOR = "mimalloc"
METADATA = "mimalloc metadata"   # Block.allocator of a word in a segment's own header
SLICE_SHIFT = 16            # MI_SEGMENT_SLICE_SHIFT: 13 + log2(8) on 64-bit, every 2.x
HUGE_BLOCK = 1 << 31        # MI_HUGE_BLOCK_SIZE: xblock_size of a huge page's block
MAX_SEGMENTS_BACK = 64      # aligned candidates tried below a word (huge segments: 2 GiB)
MAX_DELAYED = 1 << 16       # blocks walked on a heap's thread_delayed_free list

MiLayout = namedtuple("MiLayout", (
    "segment_size slice_size seg_header seg_slices seg_cookie seg_segment_size "
    "seg_segment_slices seg_info_slices seg_slice_entries page_size pg_slice_count "
    "pg_slice_offset pg_capacity pg_reserved pg_free pg_used pg_block_size pg_huge "
    "pg_local_free pg_keys pg_xthread_free pg_xheap heap_delayed heap_keys padding"))
MiLayout.__doc__ = """Where mimalloc keeps what block() reads: sizes in bytes, and each
member as (offset, size) inside its struct (pg_*: mi_page_t, seg_*: mi_segment_t, heap_*:
mi_heap_t; pg_keys / heap_keys None when the free lists are not encoded, heap_delayed None
when unknown). seg_header: bytes of mi_segment_t; pg_block_size: xblock_size (pg_huge
True: a value of HUGE_BLOCK or more means the page's size) or 2.1.4+'s block_size;
padding: bytes of mi_padding_t at each block's end (0 without it)."""


def _int(raw, field, base=0):
    off, size = field
    return int.from_bytes(raw[base + off:base + off + size], "little")


def _rotr(x, shift):
    shift %= 64
    return x if shift == 0 else ((x >> shift) | (x << (64 - shift))) & 0xFFFFFFFFFFFFFFFF


def decode(word, null, keys):
    """mi_ptr_decode: the pointer an encoded free-list `word` stands for (None for the
    list's end, which is encoded as `null`, the page or heap the list belongs to); `keys`
    None when the build does not encode (the word is the pointer)."""
    if keys is None:
        return word or None
    p = _rotr((word - keys[0]) & 0xFFFFFFFFFFFFFFFF, keys[0]) ^ keys[1]
    return None if p == null else p


class Page:
    """One mimalloc page (a span holding blocks of one size): its mi_page_t's address and
    fields, where its blocks start, their size and how many the page has."""

    __slots__ = ("addr", "segment", "start", "end", "block_size", "capacity", "reserved",
                 "used", "free", "local_free", "thread_free", "heap", "keys", "_free_set")

    def block_index(self, addr):
        if not self.start <= addr < self.end or not self.block_size:
            return None
        return (addr - self.start) // self.block_size


class Segment:
    """One segment: its address, size, the span table [(first, slices, Page or None)]
    (None: a free span) and the bytes of its header (metadata)."""

    __slots__ = ("addr", "size", "header", "spans")

    def span_of(self, slice_index):
        for first, count, page in self.spans:
            if first <= slice_index < first + count:
                return page
        return None


class MiHeap:
    """The blocks of one mimalloc instance (one per process), read through `read` with the
    layout `lay`; `main_cookie` is _mi_heap_main.cookie (0: mimalloc never started, nothing
    is a segment). Segments, pages and free sets are read once and kept: make one per stop."""

    def __init__(self, read, lay, main_cookie):
        self.read, self.lay, self.cookie = read, lay, main_cookie
        self._segments = {}   # candidate address -> Segment or None
        self._delayed = {}    # heap address -> (set of block addresses, complete)

    # -- segments ------------------------------------------------------------------------
    def segment_at(self, base):
        """The Segment whose header is at `base` (MI_SEGMENT_SIZE aligned), or None when
        the cookie does not say so."""
        seg = self._probe(base)
        return seg or None

    def _probe(self, base):
        """segment_at, but False when `base` cannot be read (no mapping there)."""
        if base not in self._segments:
            try:
                self._segments[base] = self._read_segment(base)
            except READ_ERRORS:
                self._segments[base] = False
        return self._segments[base]

    def _read_segment(self, base):
        lay = self.lay
        head = bytes(self.read(base, lay.seg_slices))
        if _int(head, lay.seg_cookie) != base ^ self.cookie:
            return None
        size = _int(head, lay.seg_segment_size)
        nslices = _int(head, lay.seg_segment_slices)
        info = _int(head, lay.seg_info_slices)
        entries = _int(head, lay.seg_slice_entries)
        max_entries = (lay.seg_header - lay.seg_slices) // lay.page_size
        if size != nslices * lay.slice_size or size < lay.segment_size or \
                not 0 < info < entries <= max_entries or entries > nslices:
            return None  # not the segment this layout describes
        raw = head + bytes(self.read(base + lay.seg_slices, entries * lay.page_size))
        seg = Segment()
        seg.addr, seg.size, seg.header = base, size, info * lay.slice_size
        seg.spans = []
        i = info
        while i < entries:  # the spans tile the slices: bounded by their count
            off = lay.seg_slices + i * lay.page_size
            count = _int(raw, lay.pg_slice_count, off)
            if count == 0 or _int(raw, lay.pg_slice_offset, off) != 0:
                break  # damaged (or caught mid-change): the rest of the segment is unknown
            count = min(count, nslices - i)
            seg.spans.append((i, count, self._page(seg, raw, off, i, count)))
            i += count
        return seg

    def _page(self, seg, raw, off, first, count):
        lay = self.lay
        bsize = _int(raw, lay.pg_block_size, off)
        if bsize == 0:
            return None  # a free span
        span = count * lay.slice_size
        start_offset = 0
        if bsize >= 8 and not (lay.pg_huge and bsize >= HUGE_BLOCK):
            start_offset = 3 * bsize if bsize <= 64 else bsize if bsize <= 512 else 0
        if lay.pg_huge and bsize >= HUGE_BLOCK:
            bsize = span
        p = Page()
        p.addr, p.segment = seg.addr + off, seg.addr
        p.start = seg.addr + first * lay.slice_size + start_offset
        p.block_size = bsize
        p.reserved = _int(raw, lay.pg_reserved, off)
        p.capacity = min(_int(raw, lay.pg_capacity, off), p.reserved)
        p.end = p.start + p.reserved * bsize
        if p.end > seg.addr + first * lay.slice_size + span:
            p.end = p.start + (span - start_offset) // bsize * bsize
        p.used = _int(raw, lay.pg_used, off)
        p.free = _int(raw, lay.pg_free, off)
        p.local_free = _int(raw, lay.pg_local_free, off)
        p.thread_free = _int(raw, lay.pg_xthread_free, off) & ~3  # low bits: delayed state
        p.heap = _int(raw, lay.pg_xheap, off)
        p.keys = None if lay.pg_keys is None else struct.unpack_from(
            "<QQ", raw, off + lay.pg_keys[0])
        p._free_set = None
        return p

    def segment_of(self, addr, low=0):
        """The Segment holding `addr`, trying the aligned addresses below it down to `low`
        (a huge segment spans several), at most MAX_SEGMENTS_BACK, and none past one that
        cannot be read (a segment is mapped whole); None outside mimalloc."""
        if not self.cookie:
            return None
        step = self.lay.segment_size
        base = addr & ~(step - 1)
        for _ in range(MAX_SEGMENTS_BACK):
            if base < low or base <= 0:
                break
            seg = self._probe(base)
            if seg is False:
                break
            if seg is not None:
                return seg if addr < seg.addr + seg.size else None
            base -= step
        return None

    # -- blocks --------------------------------------------------------------------------
    def block(self, addr, low=0):
        """The Block holding `addr` (allocator 'mimalloc'; free True, False or None when a
        free list could not be read whole), a Block of allocator METADATA for a word of a
        segment's own header, or None when `addr` is in no segment or no page."""
        seg = self.segment_of(addr, low)
        if seg is None:
            return None
        if addr < seg.addr + seg.header:
            return Block(seg.addr, seg.header, METADATA, None)
        page = seg.span_of((addr - seg.addr) // self.lay.slice_size)
        if page is None:
            return None
        i = page.block_index(addr)
        if i is None:
            return None
        start = page.start + i * page.block_size
        return Block(start, page.block_size - self.lay.padding, ALLOCATOR,
                     self._is_free(page, i, start))

    def _is_free(self, page, i, start):
        if i >= page.capacity or page.used == 0:
            return True  # never handed out, or the page holds no block in use
        free, complete = self._free_set(page)
        if start in free:
            return True
        return False if complete else None

    def _free_set(self, page):
        """(addresses of the page's free blocks, whether every list was walked whole)."""
        if page._free_set is not None:
            return page._free_set
        blocks, complete = set(), True
        for head in (page.free, page.local_free, page.thread_free):
            complete &= self._walk(head, page.addr, page.keys, page, blocks, page.capacity)
        if page.heap:
            delayed, whole = self._delayed_of(page.heap)
            blocks |= {b for b in delayed if page.start <= b < page.end}
            complete &= whole
        page._free_set = (blocks, complete)
        return page._free_set

    def _walk(self, head, null, keys, page, out, bound):
        """Adds the blocks of the encoded list from `head` to `out`; True when it ended
        normally. With `page`, every block must be one of that page's; bounded."""
        p = head
        for _ in range(bound + 1):
            if not p:
                return True
            if page is not None and (page.block_index(p) is None or
                                     (p - page.start) % page.block_size):
                return False
            if p in out:
                return False  # a cycle
            out.add(p)
            try:
                word = _U64.unpack(bytes(self.read(p, 8)))[0]
            except READ_ERRORS:
                return False
            p = decode(word, null, keys)
        return False

    def _delayed_of(self, heap):
        """The heap's thread_delayed_free blocks: freed by other threads, still counted
        as used by their pages until the owner collects them."""
        got = self._delayed.get(heap)
        if got is not None:
            return got
        lay = self.lay
        blocks, whole = set(), False
        if lay.heap_delayed is not None:
            try:
                head = _int(bytes(self.read(heap + lay.heap_delayed[0], 8)), (0, 8))
                keys = None if lay.heap_keys is None else struct.unpack(
                    "<QQ", bytes(self.read(heap + lay.heap_keys[0], 16)))
                whole = self._walk(head, heap, keys, None, blocks, MAX_DELAYED)
            except READ_ERRORS:
                whole = False
        got = self._delayed[heap] = (blocks, whole)
        return got
