"""The gdb-free half of `pyref owners` (gdbext/pyref/reader/scan.py): the aligned-word search, the
region scan, and the allocator and stack rules, on memory built byte by byte."""
import random
import struct

import pytest

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader import scan

Q = struct.Struct("<Q")


class Memory:
    """A fake target: {start: bytearray}; read() raises MemoryError outside them or on a
    page listed in `bad_pages`."""

    def __init__(self, regions=(), bad_pages=()):
        self.regions = {s: bytearray(b) for s, b in regions}
        self.bad_pages = set(bad_pages)
        self.reads = 0

    def read(self, addr, size):
        self.reads += 1
        for p in range(addr & ~4095, addr + size, 4096):
            if p in self.bad_pages:
                raise MemoryError("page 0x%x" % p)
        for s, b in self.regions.items():
            if s <= addr and addr + size <= s + len(b):
                return bytes(b[addr - s:addr - s + size])
        raise MemoryError("0x%x" % addr)

    def put(self, addr, value):
        for s, b in self.regions.items():
            if s <= addr < s + len(b):
                b[addr - s:addr - s + 8] = Q.pack(value)
                return
        raise KeyError(addr)


def words(*values):
    return b"".join(Q.pack(v) for v in values)


# ---------------------------------------------------------------------------------------
# find_words
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_libc", [True, False])
def test_find_aligned_words_only(use_libc):
    p = 0x7F0012345678
    data = words(0, p, 5, p) + b"\0\0\0\0" + Q.pack(p) + b"\0\0\0\0" + words(p)
    got = scan.find_words(data, [p], base=0x1000, use_libc=use_libc)
    # the copy at offset 36 is misaligned: not a pointer the program stored
    assert got == {p: [0x1008, 0x1018, 0x1030]}


@pytest.mark.parametrize("use_libc", [True, False])
def test_find_low_half_match_is_not_a_hit(use_libc):
    p = 0x00007F0012345678
    other = 0x00007F0112345678  # same low 32 bits, different high half
    data = words(other, 0x12345678 << 32, p)
    assert scan.find_words(data, [p], use_libc=use_libc) == {p: [16]}


@pytest.mark.parametrize("use_libc", [True, False])
def test_find_several_needles_and_limit(use_libc):
    a, b, c = 0x5555_0000_1000, 0x7FFF_F7A0_0010, 0xDEAD
    data = words(a, b, a, 0, a, b)
    assert scan.find_words(data, [a, b, c], use_libc=use_libc) == {a: [0, 16, 32],
                                                                  b: [8, 40]}
    assert scan.find_words(data, [a], limit=2, use_libc=use_libc) == {a: [0, 16]}
    assert scan.find_words(b"", [a], use_libc=use_libc) == {}
    assert scan.find_words(data, [], use_libc=use_libc) == {}


def test_libc_and_fallback_agree_on_random_memory():
    rnd = random.Random(5)
    base = 0x7F3A_1200_0000
    vals = [rnd.choice([0, rnd.randrange(100), base + 8 * rnd.randrange(1 << 16),
                        rnd.getrandbits(64)]) for _ in range(50000)]
    needles = [base + 8 * rnd.randrange(1 << 16) for _ in range(20)] + [vals[1234]]
    data = words(*vals)
    want = {}
    for i, v in enumerate(vals):
        if v in needles:
            want.setdefault(v, []).append(0x10000 + 8 * i)
    assert scan.find_words(data, needles, 0x10000, use_libc=True) == want
    assert scan.find_words(data, needles, 0x10000, use_libc=False) == want


def test_find_in_buffers_without_copy():
    p = 0x7F00_0000_0040
    data = words(1, p, 2)
    for buf in (memoryview(data), bytearray(data), memoryview(data)[8:]):
        base = 0 if len(buf) == 24 else 8
        assert scan.find_words(buf, [p], base=base) == {p: [8]}


def test_libc_search_is_in_use():
    # Debian's glibc has wmemchr; without it the fallback is 3-10x slower (bench_scan.py)
    assert scan.accelerated()


# ---------------------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------------------
def test_scan_regions_chunks_and_unreadable_pages():
    p = 0x7F00_1234_5670
    a = bytearray(3 * 4096)
    a[8:16] = Q.pack(p)
    a[4096 + 24:4096 + 32] = Q.pack(p)       # on the unreadable page
    a[2 * 4096 - 8:2 * 4096] = Q.pack(p)     # last word of the bad page too
    a[2 * 4096:2 * 4096 + 8] = Q.pack(p)     # first word after it
    b = bytearray(4096)
    b[4088:] = Q.pack(p)
    mem = Memory([(0x10000, a), (0x20000, b)], bad_pages=[0x11000])
    seen = []
    res = scan.scan(mem.read, [(0x10000, 0x13000), (0x20000, 0x21000)], [p, p],
                    chunk=8192, progress=lambda d, t: seen.append((d, t)))
    assert res.hits == {p: [0x10008, 0x12000, 0x20FF8]}
    assert res.scanned == 3 * 4096 and res.unreadable == 4096
    assert seen[-1] == (4 * 4096, 4 * 4096) and len(seen) == 3
    assert res.cut == set() and res.seconds >= 0


def test_scan_cuts_at_the_limit():
    p = 0x7F00_0000_1000
    mem = Memory([(0x10000, words(*[p] * 512))])
    res = scan.scan(mem.read, [(0x10000, 0x11000)], [p], chunk=1024, limit=100)
    assert len(res.hits[p]) == 100 and res.cut == {p}


def test_range_index_and_subtract():
    idx = scan.RangeIndex([(10, 20, "a"), (30, 40, "b"), (15, 35, "overlap"), (50, 50, "")])
    assert idx.find(10) == (10, 20, "a") and idx.find(19)[2] == "a"
    assert idx.find(20) is None and idx.find(35) == (30, 40, "b") and idx.find(50) is None
    assert len(idx) == 2
    assert scan.subtract([(0, 100), (200, 300)], [(10, 20), (90, 210), (250, 260)]) == \
        [(0, 10), (20, 90), (210, 250), (260, 300)]
    assert scan.subtract([(0, 10)], []) == [(0, 10)]


# ---------------------------------------------------------------------------------------
# pymalloc pools
# ---------------------------------------------------------------------------------------
def pool(base, size_class_bytes, nextoffset, freeblocks=(), count=3):
    """A 16 KiB pool (CPython 3.10-3.13 layout) whose blocks are `size_class_bytes`."""
    data = bytearray(scan.POOL.size)
    szidx = size_class_bytes // 16 - 1
    struct.pack_into("<I", data, 0, count)
    struct.pack_into("<Q", data, 8, freeblocks[0] if freeblocks else 0)
    struct.pack_into("<IIII", data, 32, 0, szidx, nextoffset,
                     scan.POOL.size - size_class_bytes)
    for i, fb in enumerate(freeblocks):  # each free block links to the next
        nxt = freeblocks[i + 1] if i + 1 < len(freeblocks) else 0
        struct.pack_into("<Q", data, fb - base, nxt)
    return data


def test_pymalloc_block_start_and_free_list():
    base = 0x7F00_0000_4000
    size = 48
    blocks = [base + 48 + i * size for i in range(10)]
    mem = Memory([(base, pool(base, size, nextoffset=48 + 6 * size,
                              freeblocks=[blocks[4], blocks[1]]))])
    b = scan.pymalloc_block(mem.read, blocks[2] + 24)
    assert b == scan.Block(blocks[2], 48, "pymalloc", False)
    assert scan.pymalloc_block(mem.read, blocks[1] + 8).free is True   # on the free list
    assert scan.pymalloc_block(mem.read, blocks[4]).free is True
    assert scan.pymalloc_block(mem.read, blocks[7] + 8).free is True   # never handed out
    assert scan.pymalloc_block(mem.read, base + 16) is None            # the pool header


def test_pymalloc_rejects_what_is_not_a_pool():
    base = 0x7F00_0000_8000
    data = bytearray(scan.POOL.size)
    struct.pack_into("<IIII", data, 32, 0, 2, 48, 1234)    # maxnextoffset inconsistent
    mem = Memory([(base, data)])
    assert scan.pymalloc_block(mem.read, base + 100) is None
    assert scan.pymalloc_block(Memory().read, base + 100) is None   # unreadable


# ---------------------------------------------------------------------------------------
# glibc malloc chunks
# ---------------------------------------------------------------------------------------
def heap(base, chunks, tail_top=True):
    """A heap region: [(size, in_use)], headers written glibc style, then a top chunk."""
    data = bytearray(64 * 1024)
    pos = 0
    prev_in_use = True
    for size, in_use in chunks:
        struct.pack_into("<Q", data, pos + 8, size | (1 if prev_in_use else 0))
        prev_in_use = in_use
        pos += size
    struct.pack_into("<Q", data, pos + 8, (len(data) - pos) | (1 if prev_in_use else 0))
    return data, [base + sum(s for s, _ in chunks[:i]) for i in range(len(chunks))], \
        base + pos


def test_malloc_chunk_walks_back_to_its_header():
    base = 0x5555_5555_9000
    data, starts, top = heap(base, [(0x290, True), (0x40, True), (0x1010, True),
                                    (0x30, False), (0x50, True)])
    mem = Memory([(base, data)])
    end = base + len(data)
    # pointers inside the big chunk: walking back passes over pointer-valued words
    for i in range(0, 0x1000 - 16, 8):
        mem.put(starts[2] + 16 + i, 0x7F00_0000_0000 + i)
    b = scan.malloc_chunk(mem.read, starts[2] + 16 + 0x800, base, end)
    assert b == scan.Block(starts[2] + 16, 0x1000, "malloc", False)
    b = scan.malloc_chunk(mem.read, starts[3] + 16, base, end)
    assert b.start == starts[3] + 16 and b.free is True      # next chunk's P bit is clear
    b = scan.malloc_chunk(mem.read, top + 64, base, end)
    assert b.start == top + 16 and b.free is True             # the top chunk


def test_malloc_chunk_not_fooled_by_small_integers():
    # a dict's key table with int keys: (hash = the int, key, value) entries; the hashes
    # look like chunk sizes, but their successors do not
    base = 0x5555_5555_9000
    data, starts, _ = heap(base, [(0x290, True), (0x6010, True), (0x40, True)])
    mem = Memory([(base, data)])
    for i in range(0, (0x6000 - 16) // 24):
        at = starts[1] + 16 + 24 * i
        mem.put(at, 16 * (i + 2))
        mem.put(at + 8, 0x7F00_0000_0000 + 32 * i)
        mem.put(at + 16, 0x7F00_1000_0000 + 32 * i)
    b = scan.malloc_chunk(mem.read, starts[1] + 16 + 24 * 700 + 16, base, base + len(data))
    assert b == scan.Block(starts[1] + 16, 0x6000, "malloc", False)


def test_malloc_chunk_mmapped_region():
    base = 0x7F00_0010_0000
    data = bytearray(0x5000)
    struct.pack_into("<Q", data, 8, 0x2000 | 2)            # two mmapped chunks, merged
    struct.pack_into("<Q", data, 0x2000 + 8, 0x3000 | 2)   # into one region by the kernel
    mem = Memory([(base, data)])
    end = base + len(data)
    assert scan.malloc_chunk(mem.read, base + 0x1008, base, end) == \
        scan.Block(base + 16, 0x2000 - 16, "malloc", False)
    assert scan.malloc_chunk(mem.read, base + 0x4000, base, end) == \
        scan.Block(base + 0x2010, 0x3000 - 16, "malloc", False)


def test_malloc_chunk_big_mmapped_block_far_back():
    """A word 40 MiB into an mmapped block (a 10 M-item list's ob_item) whose region does
    not begin with the chunk (the kernel merged it with the mapping below): the search
    back finds its header."""
    base = 0x7F00_1000_0000
    below = 0x10000                              # not a chunk: the walk from the start fails
    size = 48 << 20
    data = bytearray(below + size)
    struct.pack_into("<QQ", data, 0, 0x1234, 0x5678)
    struct.pack_into("<Q", data, below + 8, size | 2)
    mem = Memory([(base, data)])
    addr = base + below + 16 + (40 << 20)
    assert scan.malloc_chunk(mem.read, addr, base, base + len(data), heap=False) == \
        scan.Block(base + below + 16, size - 16, "malloc", False)


def test_malloc_region_kinds():
    base = 0x5555_5555_9000
    data, _, _ = heap(base, [(0x290, True), (0x40, True)])
    arena = bytearray(4096)
    struct.pack_into("<Q", arena, 0, 0x7F00_0400_0000 + 32)   # heap_info.ar_ptr
    mmapped = bytearray(0x3000)
    struct.pack_into("<Q", mmapped, 8, 0x3000 | 2)
    mem = Memory([(base, data), (0x7F00_0400_0000, arena), (0x7F00_0800_0000, mmapped),
                  (0x7F00_0900_0000, bytes(4096))])
    assert scan.malloc_region(mem.read, base, base + len(data)) == "heap"
    assert scan.malloc_region(mem.read, 0x1000, 0x2000, "[heap]") == "heap"
    assert scan.malloc_region(mem.read, 0x7F00_0400_0000, 0x7F00_0400_1000) == "arena"
    assert scan.malloc_region(mem.read, 0x7F00_0800_0000, 0x7F00_0800_3000) == "mmapped"
    assert scan.malloc_region(mem.read, 0x7F00_0900_0000, 0x7F00_0900_1000) is None
    # outside a heap only mmapped chunks are looked for, never a walk over headers
    assert scan.malloc_chunk(mem.read, base + 0x2a0, base, base + len(data),
                             heap=False) is None


def test_malloc_chunk_tcache_key_marks_free():
    base = 0x5555_5555_9000
    data, starts, _ = heap(base, [(0x290, True), (0x40, True), (0x40, True)])
    mem = Memory([(base, data)])
    key = 0x1234_5678_9ABC_DEF0
    mem.put(starts[1] + 24, key)                   # tcache entry: next, key
    struct.pack_into("<Q", mem.regions[base], 16 + 128 + 8 * 2, starts[1] + 16)
    keys = scan.tcache_keys(mem.read, [base])
    assert keys == {key}
    end = base + len(data)
    assert scan.malloc_chunk(mem.read, starts[1] + 32, base, end, free_keys=keys).free
    assert not scan.malloc_chunk(mem.read, starts[2] + 32, base, end, free_keys=keys).free
    assert scan.tcache_keys(mem.read, [base + 0x290]) == set()


def test_tcache_chunk_sizes_of_the_known_layouts():
    assert [scan.tcache_chunk_size(lay) for lay in scan.TCACHE_LAYOUTS] == \
        [0x290, 0x300, 0x250]     # 2.30-2.41, 2.42+, 2.26-2.29


def tcache_heap(base, counts_value=16):
    """A glibc 2.42+ main heap (Debian unstable's 2.43): 40 ordinary chunks first, then the
    thread cache (0x300: 76 uint16_t num_slots, 76 heads) allocated at the first free, then
    chunks some of which are cached: two in bin 3 (0x50), one in bin 10 (0xc0), one in
    large bin 64 (0x500). Returns (Memory, end, struct's user data, {name: user data})."""
    chunks = [(0x30 + 16 * (i % 5), True) for i in range(40)] + [(0x300, True)] + \
        [(0x50, True), (0x50, True), (0xc0, True), (0x500, True), (0x90, True)]
    data, starts, _ = heap(base, chunks)
    mem = Memory([(base, data)])
    tc = starts[40] + 16
    user = {"a": starts[41] + 16, "b": starts[42] + 16, "c": starts[43] + 16,
            "large": starts[44] + 16, "live": starts[45] + 16}
    for i in range(76):
        struct.pack_into("<H", mem.regions[base], tc - base + 2 * i, counts_value)
    return mem, base + len(data), tc, user


def cache(mem, tc, layout, bin_index, entry, key, nxt=0):
    """Puts `entry` at the head of bin `bin_index` of the struct at `tc`, glibc style."""
    mem.put(tc + ((layout.bins * layout.count_size + 7) & ~7) + 8 * bin_index, entry)
    mem.put(entry, nxt)            # next (safe-linking mangles it: not read)
    mem.put(entry + 8, key)


def test_tcache_keys_of_a_late_thread_cache():
    """glibc 2.42+ allocates the thread cache at the first free, after other chunks, with
    76 bins and num_slots counters (slots left, not chunks held): its key is still found,
    and the chunks carrying it are free; a chunk without it is not."""
    base = 0x5555_5555_9000
    mem, end, tc, u = tcache_heap(base)
    lay = scan.TcacheLayout(76, 2)
    key = 0x8F3E_77A1_0C45_D219
    cache(mem, tc, lay, 3, u["b"], key, nxt=u["a"])
    mem.put(u["a"] + 8, key)
    cache(mem, tc, lay, 10, u["c"], key)
    cache(mem, tc, lay, 64, u["large"], key)
    assert scan.tcache_struct_keys(mem.read, tc, lay) == {key}
    keys = scan.tcache_keys(mem.read, [(base, end)])
    assert keys == {key}
    for name in ("a", "b", "c", "large"):
        assert scan.malloc_chunk(mem.read, u[name] + 16, base, end, free_keys=keys).free, name
    assert scan.malloc_chunk(mem.read, u["live"] + 16, base, end, free_keys=keys).free is False
    # the layout the target's DWARF gives is used alone; a wrong one finds nothing
    assert scan.tcache_keys(mem.read, [(base, end)], [lay]) == {key}
    assert scan.tcache_keys(mem.read, [(base, end)], [scan.TcacheLayout(64, 2)]) == set()
    # the walk is bounded by the region given
    assert scan.tcache_keys(mem.read, [(base, tc - 16)]) == set()


def test_tcache_keys_per_thread_struct_address():
    """glibc 2.29-2.33: the key is the thread cache's own address."""
    base = 0x5555_5555_9000
    data, starts, _ = heap(base, [(0x290, True), (0x40, True), (0x40, True)])
    mem = Memory([(base, data)])
    tc = base + 16
    cache(mem, tc, scan.TcacheLayout(64, 2), 2, starts[1] + 16, tc)
    assert scan.tcache_keys(mem.read, [(base, base + len(data))]) == {tc}


def test_tcache_keys_not_fooled_by_a_chunk_of_pointers():
    """A 0x300 chunk that is not a thread cache: its words point to chunks of other sizes
    than their index says, or to entries whose second words differ: no key."""
    base = 0x5555_5555_9000
    mem, end, tc, u = tcache_heap(base)
    lay = scan.TcacheLayout(76, 2)
    cache(mem, tc, lay, 5, u["b"], 0x1111_2222_3333_4444)   # b is 0x50: bin 3, not 5
    assert scan.tcache_struct_keys(mem.read, tc, lay) is None
    assert scan.tcache_keys(mem.read, [(base, end)]) == set()
    mem, end, tc, u = tcache_heap(base)
    cache(mem, tc, lay, 3, u["b"], 0x1111_2222_3333_4444)
    cache(mem, tc, lay, 10, u["c"], 0x5555_6666_7777_8888)  # two keys: not one cache
    assert scan.tcache_struct_keys(mem.read, tc, lay) is None
    mem.put(tc + 152 + 8 * 10, u["c"] + 8)                 # misaligned head
    assert scan.tcache_struct_keys(mem.read, tc, lay) is None
    # a thread cache whose lists are all empty proves no key
    mem, end, tc, u = tcache_heap(base)
    assert scan.tcache_struct_keys(mem.read, tc, lay) == set()
    assert scan.tcache_keys(mem.read, [(base, end)]) == set()


def test_tcache_walk_stops_at_a_bad_header_and_unreadable_memory():
    base = 0x5555_5555_9000
    mem, end, tc, u = tcache_heap(base)
    lay = scan.TcacheLayout(76, 2)
    cache(mem, tc, lay, 3, u["b"], 0x1234_5678_9ABC_DEF1)
    bad = Memory([(base, mem.regions[base])])
    bad.put(base + 0x70 + 8, 0x1234)             # the third chunk's header is garbage
    assert scan.tcache_keys(bad.read, [(base, end)]) == set()
    # a region given larger than what can be read: the walk reads what there is
    assert scan.tcache_keys(mem.read, [(base, end + (1 << 20))]) == {0x1234_5678_9ABC_DEF1}
    # a walk from a chunk that does not begin a heap: its prev_size word is the previous
    # chunk's data
    mem.put(base + 0x30, 0xDEAD)
    assert scan.tcache_keys(mem.read, [(base + 0x30, end)]) == set()
    assert list(scan._heap_chunks(Memory().read, base, end)) == []


def test_debug_allocator_prefix_and_values_prefix():
    debug = b"\0" * 7 + b"\x28"  # the debug allocator stores sizes big-endian
    mem = Memory([(0x1000, debug + b"o" + b"\xFD" * 7 + bytes(48)),
                  (0x4000, debug + b"r" + b"\xFD" * 7 + debug + b"o" + b"\xFD" * 7 + bytes(32)),
                  (0x2000, Q.pack(40) + b"x" + b"\xFD" * 7 + bytes(48)),
                  (0x3000, bytes(23) + b"\x18" + bytes(40))])
    assert scan.data_start(mem.read, 0x1000) == 0x1010
    assert scan.data_start(mem.read, 0x4000) == 0x4020   # raw domain under object domain
    assert scan.data_start(mem.read, 0x2000) == 0x2000
    assert scan.data_start(mem.read, 0x9000) == 0x9000
    # new_values() writes the prefix size in the byte just before the values
    assert scan.values_prefixes(mem.read, 0x3000, 64) == [24]
    assert scan.values_prefixes(mem.read, 0x3000, 16) == []


# ---------------------------------------------------------------------------------------
# stacks
# ---------------------------------------------------------------------------------------
def test_stack_slot():
    frames = [(0x7000, "f0"), (0x7100, "f1"), (0x7400, "main")]
    assert scan.stack_slot(frames, 0x6000) == ("dead", None)
    assert scan.stack_slot(frames, 0x7000 - 64) == ("frame", "f0")      # the red zone
    assert scan.stack_slot(frames, 0x70F8) == ("frame", "f0")
    assert scan.stack_slot(frames, 0x7100) == ("frame", "f1")
    assert scan.stack_slot(frames, 0x7500) == ("outermost", "main")
    assert scan.stack_slot([], 0x7000) == ("dead", None)


def test_malloc_region_main_heap_without_the_tcache_first():
    """glibc 2.43 (Debian unstable) allocates its thread cache later: the main heap of a
    core (no [heap] name) is still recognised by its first chunks chaining in use; a region
    of other words, or one whose second chunk follows a free one, is not."""
    base = 0x5555_5555_9000
    data, _, _ = heap(base, [(0x30, True), (0x90, True), (0x40, True), (0x290, True),
                             (0x50, True)])
    freed, _, _ = heap(base, [(0x30, True), (0x90, False), (0x40, True), (0x290, True)])
    words = bytearray(4096)
    struct.pack_into("<QQ", words, 0, 0, 0x31)   # one chunk-like header, then nothing
    mem = Memory([(base, data), (0x7F00_0100_0000, freed), (0x7F00_0200_0000, words)])
    assert scan.malloc_region(mem.read, base, base + len(data)) == "heap"
    assert scan.malloc_region(mem.read, 0x7F00_0100_0000,
                              0x7F00_0100_0000 + len(freed)) is None
    assert scan.malloc_region(mem.read, 0x7F00_0200_0000, 0x7F00_0200_1000) is None
