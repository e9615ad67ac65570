"""The conservative pointer scan behind `pyref owners`: which 8-byte words of a target's
memory hold a given address, and what allocator block each such word lies in.

No gdb here. Every function that touches the target takes a `read(addr, size) -> bytes`
callable (pyref/errors.py: the reader contract): GDB commands pass inferior/target.py's
read, tests pass one over a dict of bytes.

Workload: a whole process, typically 10 MiB - a few GiB of writable memory, searched for
one to a few dozen addresses per pass. Speed (bench/bench_scan.py measures it): memory
is read in 1 MiB chunks and searched as bytes, never word by word in Python. The search
uses the C library's `wmemchr` through ctypes when it is there: it compares 4-byte units
with SIMD, so the low half of the pointer is found at 10+ GB/s in cache, and each
candidate (rare: the low 32 bits of a heap pointer are nearly unique) is confirmed by its
high half and its 8-byte alignment. Without ctypes it falls back to `bytes.find` of the
whole 8-byte little-endian word (same hits, ~10x slower: pointer bytes defeat its skip
table). Only aligned words count: the compilers and allocators pyref serves never store a
pointer misaligned.

Allocator blocks. A hit in the heap is attributed by finding the block around it:
- pymalloc (objects and buffers up to 512 bytes): the 16 KiB pool containing the word has a
  header naming its size class, so the block start is exact; a block on the pool's free
  list, or past its high-water mark, is free (its words are stale);
- glibc malloc (larger buffers): a region made of mmapped chunks (large blocks) is walked
  from its start, exactly; otherwise, walking back from the word, the first 16-byte aligned
  chunk header whose size covers the word and whose next few headers are plausible (a
  heuristic: small integers in the data can look like sizes, their successors rarely do),
  else an mmapped chunk at a page boundary below. Free: the top chunk, a chunk whose
  successor's P bit is clear, a chunk carrying the thread cache's key (tcache_keys());
- CPython's debug allocator (`PYTHONMALLOC=debug`, the default of a debug build) puts a
  16-byte prefix (size, API id, 0xFD guard bytes) in front of the data, twice for a large
  object: data_start().
"""
import struct
import time
from bisect import bisect_right
from collections import namedtuple

from pyref.errors import READ_ERRORS
from pyref.reader.bulk import CHUNK

WORD = 8
PAGE = 4096
MAX_HITS = 20000            # hits kept per needle; past it the result says it was cut

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _words(data):
    return memoryview(data).cast("Q")


# ---------------------------------------------------------------------------------------
# Finding aligned words in a buffer
# ---------------------------------------------------------------------------------------
def _load_wmemchr():
    """libc's wmemchr as a ctypes function taking (address, int32, count), checked on a
    known buffer; None when ctypes or the function is not available."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        fn = libc.wmemchr
        fn.restype = ctypes.c_void_p
        fn.argtypes = (ctypes.c_void_p, ctypes.c_int32, ctypes.c_size_t)
        if ctypes.sizeof(ctypes.c_wchar) != 4:
            return None
        probe = b"\0" * 12 + _U32.pack(0x89ABCDEF) + b"\0" * 4
        start = _address_of(probe)
        got = fn(start, _signed32(0x89ABCDEF), len(probe) // 4)
        if got is None or got - start != 12:
            return None
        return fn
    except Exception:  # no ctypes, no libc symbol, a libc with 2-byte wchar_t...
        return None


def _address_of(data):
    """Address of the memory of `data`: a bytes object, or any object with the buffer
    protocol (a memoryview, gdb's Membuf), without a copy. The address stays valid while
    the caller holds `data`."""
    import ctypes
    if type(data) is bytes:
        return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    view = _PyBuffer()
    if ctypes.pythonapi.PyObject_GetBuffer(ctypes.py_object(data), ctypes.byref(view), 0):
        raise TypeError("no buffer")
    try:
        return view.buf
    finally:
        ctypes.pythonapi.PyBuffer_Release(ctypes.byref(view))


try:
    import ctypes as _ctypes

    class _PyBuffer(_ctypes.Structure):  # Py_buffer (Include/pybuffer.h)
        _fields_ = [("buf", _ctypes.c_void_p), ("obj", _ctypes.c_void_p),
                    ("len", _ctypes.c_ssize_t), ("itemsize", _ctypes.c_ssize_t),
                    ("readonly", _ctypes.c_int), ("ndim", _ctypes.c_int),
                    ("format", _ctypes.c_char_p), ("shape", _ctypes.c_void_p),
                    ("strides", _ctypes.c_void_p), ("suboffsets", _ctypes.c_void_p),
                    ("internal", _ctypes.c_void_p)]
except ImportError:  # no ctypes: bytes.find only
    _PyBuffer = None


def _signed32(v):
    return v - (1 << 32) if v & 0x80000000 else v


_wmemchr = _load_wmemchr()


def accelerated():
    """True when the search runs on libc's wmemchr (else bytes.find)."""
    return _wmemchr is not None


def find_words(data, needles, base=0, limit=MAX_HITS, use_libc=True):
    """{needle: [address]} of the 8-byte aligned little-endian words of `data` (bytes, or
    a contiguous buffer such as a memoryview or gdb's Membuf, whose first byte is at
    address `base`, base 8-aligned) equal to one of the integers `needles`. At most
    `limit` addresses per needle, in increasing order. Needles absent from `data` are
    absent from the result."""
    out = {}
    n = memoryview(data).nbytes & ~3
    if not needles or not n:
        return out
    fn = _wmemchr if use_libc else None
    start = None
    if fn is not None:
        try:
            start = _address_of(data)
        except (TypeError, ValueError, AttributeError):
            fn = None
    if fn is not None:
        for needle in needles:
            lo = _signed32(needle & 0xFFFFFFFF)
            hi = _U32.pack(needle >> 32)
            pos, end = start, start + n
            found = None
            while pos < end:
                r = fn(pos, lo, (end - pos) >> 2)
                if not r:
                    break
                off = r - start
                if not off & 7 and bytes(data[off + 4:off + 8]) == hi:
                    if found is None:
                        found = out[needle] = []
                    found.append(base + off)
                    if len(found) >= limit:
                        break
                pos = r + 4
        return out
    if type(data) is not bytes:
        data = bytes(data)
    for needle in needles:
        pat = _U64.pack(needle)
        i = data.find(pat)
        found = None
        while i != -1:
            if i & 7:
                i = data.find(pat, (i | 7) + 1)
                continue
            if found is None:
                found = out[needle] = []
            found.append(base + i)
            if len(found) >= limit:
                break
            i = data.find(pat, i + 8)
    return out


# ---------------------------------------------------------------------------------------
# Scanning regions
# ---------------------------------------------------------------------------------------
class ScanResult:
    """What one pass over the regions found: `hits` {needle: [address]} (increasing
    within each region), `scanned` bytes searched, `unreadable` bytes skipped (not in the
    core, or unmapped since the list was made), `seconds`, `cut` the needles whose hits
    reached the limit, `stopped_early` when on_hits dropped every needle before the end,
    `callback_seconds` the part of `seconds` spent in on_hits."""

    def __init__(self):
        self.hits = {}
        self.scanned = self.unreadable = 0
        self.seconds = 0.0
        self.cut = set()
        self.stopped_early = False
        self.callback_seconds = 0.0

    @property
    def rate(self):
        """Bytes per second searched, on_hits excluded (0 when nothing was)."""
        t = self.seconds - self.callback_seconds
        return self.scanned / t if t > 0 else 0.0


def scan(read, regions, needles, chunk=CHUNK, limit=MAX_HITS, progress=None,
         use_libc=True, on_hits=None):
    """One pass over `regions` ([(start, end)], 8-aligned, searched in that order) for the
    words equal to any of `needles`: a ScanResult. `read` may return bytes or any
    contiguous buffer (read only until the next call). Each region is read in
    `chunk`-byte pieces; a piece that cannot be read is retried page by page and what
    stays unreadable is skipped and counted. `progress(done_bytes, total_bytes)`, when
    given, is called after each piece. `on_hits(found)`, when given, is called with each
    piece's {needle: [address]} and returns the needles no longer wanted (their answer
    is known): the pass ends early when none is left (`res.stopped_early`).
    This function cannot fail on bad memory."""
    res = ScanResult()
    needles = tuple(dict.fromkeys(n & 0xFFFFFFFFFFFFFFFF for n in needles))
    total = sum(max(0, e - s) for s, e in regions)
    done = 0
    t0 = time.perf_counter()
    for start, end in regions:
        pos = start
        while pos < end and needles:
            n = min(chunk, end - pos)
            try:
                data = read(pos, n)
            except READ_ERRORS:
                data = None
            if data is not None and memoryview(data).nbytes == n:
                found = find_words(data, needles, pos, limit, use_libc)
                res.scanned += n
            else:
                found = _scan_pages(read, pos, n, needles, res, limit, use_libc)
            _merge(res, found, limit)
            if found and on_hits is not None:
                t1 = time.perf_counter()
                drop = on_hits(found)
                res.callback_seconds += time.perf_counter() - t1
                if drop:
                    needles = tuple(x for x in needles if x not in drop)
            pos += n
            done += n
            if progress is not None:
                progress(done, total)
        if not needles:
            res.stopped_early = done < total
            break
    res.seconds = time.perf_counter() - t0
    return res


def _scan_pages(read, pos, n, needles, res, limit, use_libc):
    found = {}
    end = pos + n
    while pos < end:
        step = min(PAGE - pos % PAGE, end - pos)
        try:
            data = bytes(read(pos, step))
        except READ_ERRORS:
            data = None
        if data is not None and len(data) == step:
            for needle, addrs in find_words(data, needles, pos, limit, use_libc).items():
                found.setdefault(needle, []).extend(addrs)
            res.scanned += step
        else:
            res.unreadable += step
        pos += step
    return found


def _merge(res, found, limit):
    for needle, addrs in found.items():
        have = res.hits.setdefault(needle, [])
        room = limit - len(have)
        if room <= 0:
            res.cut.add(needle)
            continue
        if len(addrs) > room:
            res.cut.add(needle)
        have.extend(addrs[:room])


# ---------------------------------------------------------------------------------------
# Address ranges
# ---------------------------------------------------------------------------------------
class RangeIndex:
    """Sorted, non-overlapping [start, end) ranges, each with a payload; lookup by address
    in O(log n). Overlapping input keeps the first of two overlapping ranges."""

    def __init__(self, ranges=()):
        items = sorted((s, e, p) for s, e, p in ranges if e > s)
        self._starts, self._items = [], []
        last_end = None
        for s, e, p in items:
            if last_end is not None and s < last_end:
                continue
            self._starts.append(s)
            self._items.append((s, e, p))
            last_end = e

    def find(self, addr):
        """(start, end, payload) of the range containing `addr`, or None."""
        i = bisect_right(self._starts, addr) - 1
        if i >= 0:
            s, e, p = self._items[i]
            if addr < e:
                return s, e, p
        return None

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)


def subtract(regions, holes):
    """[(start, end)] of `regions` with every [start, end) of `holes` cut out."""
    holes = sorted(holes)
    out = []
    for s, e in sorted(regions):
        cur = s
        for hs, he in holes:
            if he <= cur or hs >= e:
                continue
            if hs > cur:
                out.append((cur, hs))
            cur = max(cur, he)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out


# ---------------------------------------------------------------------------------------
# Allocator blocks
# ---------------------------------------------------------------------------------------
Block = namedtuple("Block", "start size allocator free")
Block.__doc__ = """An allocator block: first byte, size in bytes, 'pymalloc' or 'malloc',
and whether the allocator holds it as free (True), in use (False) or cannot say (None)."""

PoolLayout = namedtuple("PoolLayout", "size overhead ref freeblock szidx nextoffset "
                                      "maxnextoffset align")
# CPython 3.10-3.13 (Objects/obmalloc.c, 64-bit): 16 KiB pools, a 48-byte header, 16-byte
# size classes. inferior/layout.py passes the offsets read from DWARF when it has them.
POOL = PoolLayout(size=1 << 14, overhead=48, ref=0, freeblock=8, szidx=36, nextoffset=40,
                  maxnextoffset=44, align=16)
MAX_SMALL = 512             # pymalloc's SMALL_REQUEST_THRESHOLD


def pymalloc_block(read, addr, pool=POOL, pool_bytes=None):
    """The pymalloc Block containing `addr`, or None when `addr` is not inside a pymalloc
    pool (the 16 KiB-aligned header does not validate). `pool_bytes`, the pool's bytes if
    the caller has them, saves a read. Free blocks (on the pool's free list, or never
    handed out) are marked free=True."""
    base = addr & ~(pool.size - 1)
    data = pool_bytes
    if data is None:
        try:
            data = bytes(read(base, pool.size))
        except READ_ERRORS:
            try:
                data = bytes(read(base, pool.overhead))
            except READ_ERRORS:
                return None
    if len(data) < pool.overhead:
        return None
    szidx = _U32.unpack_from(data, pool.szidx)[0]
    nextoffset = _U32.unpack_from(data, pool.nextoffset)[0]
    maxnext = _U32.unpack_from(data, pool.maxnextoffset)[0]
    count = _U32.unpack_from(data, pool.ref)[0]
    size = (szidx + 1) * pool.align
    if size > MAX_SMALL or maxnext != pool.size - size:
        return None
    if nextoffset < pool.overhead or nextoffset > maxnext + size or \
            (nextoffset - pool.overhead) % size:
        return None
    nblocks = (pool.size - pool.overhead) // size
    if count > nblocks:
        return None
    off = addr - base
    if off < pool.overhead:
        return None
    index = (off - pool.overhead) // size
    if index >= nblocks:
        return None
    start = base + pool.overhead + index * size
    free = None
    if len(data) == pool.size:
        free = start - base >= nextoffset or start in _free_list(data, base, pool, size,
                                                                  nblocks)
    return Block(start, size, "pymalloc", free)


def _free_list(data, base, pool, size, nblocks):
    """Addresses on the pool's free list (walked inside the pool's bytes, bounded)."""
    out = set()
    p = _U64.unpack_from(data, pool.freeblock)[0]
    for _ in range(nblocks + 1):
        if not p or p in out or not base + pool.overhead <= p < base + pool.size or \
                (p - base - pool.overhead) % size:
            break
        out.add(p)
        p = _U64.unpack_from(data, p - base)[0]
    return out


# glibc malloc (malloc/malloc.c): a chunk is [prev_size][size | A M P][user data...]; user
# data is 16-aligned; the next chunk's header follows at chunk + size.
_PREV_INUSE, _IS_MMAPPED, _NON_MAIN = 1, 2, 4
MAX_CHUNK_BACK = 1 << 20    # bytes walked back looking for a chunk header


def malloc_region(read, start, end, path=""):
    """What glibc malloc made of the region [start, end): 'heap' (the main heap, whose
    first chunk is the thread cache, or a region named [heap]), 'arena' (a thread arena's
    heap: its heap_info begins with a pointer to the arena's state just after it),
    'mmapped' (it begins with an mmapped chunk), or None."""
    if path == "[heap]":
        return "heap"
    try:
        head = bytes(read(start, 16))
    except READ_ERRORS:
        return None
    first, second = struct.unpack("<QQ", head)
    if second == TCACHE_CHUNK or _main_heap_start(read, start, end, first, second):
        return "heap"
    if start < first <= start + 64 and start & ((1 << 20) - 1) == 0:
        return "arena"
    if first == 0 and second & _IS_MMAPPED and (second & ~7) >= PAGE and \
            not (second & ~7) & (PAGE - 1) and start + (second & ~7) <= end:
        return "mmapped"
    return None


def _main_heap_start(read, start, end, first, second):
    """True when [start, end) begins like the main heap whatever its first chunk is (glibc
    2.43 allocates its thread cache later: the first chunk is not TCACHE_CHUNK): no
    prev_size, PREV_INUSE set, and the first chunks chain with plausible in-use sizes."""
    if first != 0 or not second & _PREV_INUSE or second & (_IS_MMAPPED | _NON_MAIN):
        return False
    addr = start
    for _ in range(4):
        size = second & ~7
        if size < 32 or size & 15 or addr + size + 16 > end or size >= 1 << 20:
            return False
        addr += size
        try:
            second = struct.unpack("<Q", bytes(read(addr + 8, 8)))[0]
        except READ_ERRORS:
            return False
        if not second & _PREV_INUSE:   # the chunk before is in use: it was allocated
            return False
    return True


def malloc_chunk(read, addr, region_start, region_end, max_back=MAX_CHUNK_BACK,
                 free_keys=(), heap=True):
    """The glibc malloc Block (its user data) containing `addr`, or None.

    First the exact case: a region that begins with mmapped chunks (malloc's large blocks,
    one mapping each, which the kernel may merge into one region) is walked chunk by chunk
    from its start. Otherwise a heuristic: walking back 16 bytes at a time from `addr` (at
    most `max_back` bytes) to the nearest header whose size covers `addr` and whose
    successors (up to SUCCESSORS headers) are plausible too.
    Free: the top chunk (it reaches the region's end), a chunk whose successor's P bit is
    clear (binned), or one whose second word is a tcache key of `free_keys`.
    `heap` False (a region malloc_region() does not know as a heap) skips the walk back
    over chunk headers: only mmapped chunks are looked for."""
    blk = _mmapped_chunk(read, addr, region_start, region_end)
    if blk is None and heap:
        blk = _walk_back(read, addr, region_start, region_end, max_back)
    if blk is None:
        blk = _mmapped_back(read, addr, region_start, region_end)
    if blk is not None and free_keys and not blk.free:
        try:
            key = _U64.unpack(bytes(read(blk.start + 8, 8)))[0]
        except READ_ERRORS:
            key = None
        if key in free_keys and blk.start + 8 != addr:
            blk = blk._replace(free=True)
    return blk


SUCCESSORS = 4              # headers after a candidate that must be plausible too
MAX_MMAPPED_WALK = 4096     # chunks walked from a region's start


def _mmapped_chunk(read, addr, region_start, region_end):
    c = region_start
    for _ in range(MAX_MMAPPED_WALK):
        try:
            raw = _U64.unpack(bytes(read(c + 8, 8)))[0]
        except READ_ERRORS:
            return None
        size = raw & ~7
        if not raw & _IS_MMAPPED or size < PAGE or size & (PAGE - 1) or \
                c + size > region_end:
            return None
        if addr < c + size:
            return Block(c + 16, size - 16, "malloc", False) if addr >= c + 16 else None
        c += size
    return None


# Bytes searched back, page by page, for an mmapped chunk: its header may be far below
# the word (a 10 M-item list's ob_item is 80 MB, a big dict's keys likewise); 256 reads of
# 1 MiB at most, for a block of up to 32 M pointers.
MAX_MMAPPED_BACK = 256 << 20


def _walk_back(read, addr, region_start, region_end, max_back):
    lo = max(region_start, (addr - max_back) & ~15)
    # chunk c's header is at c+8; its user data at c+16; c is 16-aligned.
    window = 4096
    while True:
        wlo = max(lo, (addr - window) & ~15)
        try:
            data = bytes(read(wlo, addr + 8 - wlo))
        except READ_ERRORS:
            return None
        c = (addr - 16) & ~15
        while c >= wlo - 8:
            if c + 8 >= wlo:
                raw = _U64.unpack_from(data, c + 8 - wlo)[0]
                blk = _check_chunk(read, c, raw, addr, region_start, region_end)
                if blk is not None:
                    return blk
            c -= 16
        if wlo <= lo:
            return None
        window *= 4


def _mmapped_back(read, addr, region_start, region_end):
    """A large block of its own mapping (glibc's mmapped chunk: page aligned, prev_size 0,
    IS_MMAPPED), looked for at the page boundaries below `addr`, read 1 MiB at a time."""
    top = (addr - 16) & ~(PAGE - 1)
    stop = max(region_start, addr - MAX_MMAPPED_BACK) & ~(PAGE - 1)
    while top >= stop:
        lo = max(stop, top - CHUNK + PAGE)
        try:
            data = bytes(read(lo, top + 16 - lo))
        except READ_ERRORS:
            return None
        for c in range(top, lo - 1, -PAGE):
            prev, raw = struct.unpack_from("<QQ", data, c - lo)
            size = raw & ~7
            if prev == 0 and raw & _IS_MMAPPED and size >= PAGE and \
                    not size & (PAGE - 1) and addr < c + size <= region_end:
                return Block(c + 16, size - 16, "malloc", False)
        top = lo - PAGE
    return None


def _check_chunk(read, c, raw, addr, region_start, region_end):
    size = raw & ~7
    if size < 32 or size & 15 or c + size <= addr or c + size > region_end or \
            size >= 1 << 40 or raw & _IS_MMAPPED:
        return None
    nxt = c + size
    if nxt + 16 > region_end:  # reaching the region's end: the top chunk, free memory
        return Block(c + 16, size - 16, "malloc", True)
    free = None
    for i in range(SUCCESSORS):
        try:
            nraw = _U64.unpack(bytes(read(nxt + 8, 8)))[0]
        except READ_ERRORS:
            return None
        nsize = nraw & ~7
        if nsize < 32 or nsize & 15 or nraw & _IS_MMAPPED or nxt + nsize > region_end:
            return None
        if i == 0:
            # P of the next header says whether this chunk is in use (tcache and fastbin
            # chunks keep it set: the caller checks tcache keys).
            free = not nraw & _PREV_INUSE
        nxt += nsize
        if nxt + 16 > region_end:
            break
    return Block(c + 16, size - 16, "malloc", free)


TCACHE_CHUNK = 0x291        # glibc 2.30-2.41: the heap's first chunk, tcache_perthread_struct

# glibc's thread cache (malloc/malloc.c, tcache_perthread_struct): one chunk per thread
# holding `bins` counters of `count_size` bytes, then `bins` list heads (an entry is a
# chunk's user data: [next][key]). The counters' meaning changed (2.42: slots left, not
# chunks held), so only the heads are trusted. Known layouts, tried when the target's
# DWARF does not give one: 2.30-2.41 (64 bins, uint16_t counts: chunk 0x290), 2.42+ (64
# small and 12 large bins: 0x300), 2.26-2.29 (char counts: 0x250).
TcacheLayout = namedtuple("TcacheLayout", "bins count_size")
TCACHE_LAYOUTS = (TcacheLayout(64, 2), TcacheLayout(76, 2), TcacheLayout(64, 1))
TCACHE_SMALL_BINS = 64      # bin i < 64 holds chunks of exactly 32 + 16 * i bytes
MAX_TCACHE_WALK = 16 << 20  # bytes of the main heap walked looking for the thread cache
MAX_TCACHE_CHUNKS = 1 << 18


def tcache_chunk_size(layout):
    """The chunk size (flags clear) malloc gives a tcache_perthread_struct of `layout`."""
    entries = (layout.bins * layout.count_size + 7) & ~7
    return max(32, (entries + 8 * layout.bins + 8 + 15) & ~15)


def tcache_struct_keys(read, user, layout):
    """The tcache keys that the tcache_perthread_struct of `layout` whose user data is at
    `user` proves, or None when those bytes are not such a struct. Each non-empty list
    head must be a 16-aligned entry whose chunk has the bin's size (a small bin's exact
    size, a large bin's at least its smallest), and all heads must carry the same
    non-zero key: glibc 2.34+'s random per-process value, or 2.29-2.33's struct address.
    A struct whose lists are all empty proves no key: an empty set."""
    off = (layout.bins * layout.count_size + 7) & ~7
    try:
        data = bytes(read(user, off + 8 * layout.bins))
    except READ_ERRORS:
        return None
    heads = struct.unpack_from("<%dQ" % layout.bins, data, off)
    keys = set()
    for i, e in enumerate(heads):
        if not e:
            continue
        if e & 15:
            return None
        try:
            _, raw, _, key = struct.unpack("<QQQQ", bytes(read(e - 16, 32)))
        except READ_ERRORS:
            return None
        size = raw & ~7
        want = 32 + 16 * i
        if raw & _IS_MMAPPED or (size != want if i < TCACHE_SMALL_BINS else
                                 size < want or size & 15):
            return None
        keys.add(key)
    if len(keys) > 1 or 0 in keys:
        return None
    return keys


def tcache_keys(read, regions, layouts=TCACHE_LAYOUTS):
    """The keys glibc writes into the second word of a chunk it puts in a thread cache
    (2.29+: the tcache struct's address; 2.34+: a random per-process value), learnt from
    the list heads of the tcache_perthread_structs found in `regions` [(start, end)] (a
    start alone is taken as a region of MAX_TCACHE_WALK bytes). glibc 2.26-2.41 allocates
    the main thread's struct first, so it is the main heap's first chunk; 2.42+ allocates
    it at the thread's first free, somewhere further: each region that begins with a chain
    of chunks is walked chunk by chunk (at most MAX_TCACHE_WALK bytes, MAX_TCACHE_CHUNKS
    chunks) and each chunk of a layout's size is checked (tcache_struct_keys). `layouts`:
    the target's own (from DWARF) or the known ones. A set, empty if none."""
    by_size = {}
    for lay in layouts:
        by_size.setdefault(tcache_chunk_size(lay), []).append(lay)
    keys = set()
    for region in regions:
        start, end = region if isinstance(region, tuple) else (region, region + MAX_TCACHE_WALK)
        for c, size in _heap_chunks(read, start, min(end, start + MAX_TCACHE_WALK)):
            for lay in by_size.get(size, ()):
                got = tcache_struct_keys(read, c + 16, lay)
                if got:
                    keys |= got
                    break
            # 2.34+ has one key per process: the first struct that proves one is enough
            if keys and not keys & {c + 16}:
                break
    keys.discard(0)
    return keys


def _heap_chunks(read, start, end):
    """(chunk address, size) of the chunks of a heap that begins at `start` (prev_size 0,
    PREV_INUSE set: glibc's main heap), walked by their sizes until one is implausible,
    unreadable, or reaches `end` (the top chunk is not yielded). Bounded by
    MAX_TCACHE_CHUNKS; read 64 KiB at a time."""
    window = 1 << 16
    base, data = start, b""
    c = start
    for n in range(MAX_TCACHE_CHUNKS):
        if c + 16 > base + len(data):
            base = c
            data = b""
            # a window past the mapping's end fails whole: then up to the page's end
            for n_bytes in (min(window, end - base), PAGE - base % PAGE):
                try:
                    data = bytes(read(base, max(16, n_bytes)))
                    break
                except READ_ERRORS:
                    continue
            if len(data) < 16:
                return
        prev, raw = struct.unpack_from("<QQ", data, c - base)
        size = raw & ~7
        if (n == 0 and (prev or not raw & _PREV_INUSE)) or raw & (_IS_MMAPPED | _NON_MAIN) \
                or size < 32 or size & 15 or c + size + 16 > end:
            return
        yield c, size
        c += size


# CPython's debug allocator (Objects/obmalloc.c, _PyMem_DebugRawAlloc): [size: 8][API id:
# 1]['\xFD' x 7][data][...]. API ids: 'r' raw, 'm' mem, 'o' object.
DEBUG_PREFIX = 16
_DEBUG_IDS = b"rmo"
_FORBIDDEN7 = b"\xFD" * 7


def data_start(read, block_start, head=None):
    """Where the caller's data begins in a block: after the debug allocator's 16-byte
    prefix when the block has one — twice when the object domain's debug hook got its
    memory from the raw domain's (a large object in a debug build: 'r' then 'o') — else
    at the block start. `head`, the block's first 32 bytes if the caller has them, saves
    a read."""
    if head is None:
        try:
            head = bytes(read(block_start, 2 * DEBUG_PREFIX))
        except READ_ERRORS:
            try:
                head = bytes(read(block_start, DEBUG_PREFIX))
            except READ_ERRORS:
                return block_start
    start = block_start
    for _ in range(2):
        off = start - block_start
        if len(head) >= off + 16 and head[off + 8] in _DEBUG_IDS and \
                head[off + 9:off + 16] == _FORBIDDEN7:
            start += DEBUG_PREFIX
        else:
            break
    return start


def values_prefixes(read, start, limit):
    """Offsets p (8..48, multiples of 8) at which a CPython 3.11/3.12 split-dict values
    array could begin in a buffer at `start`: the byte before it holds p itself (the
    prefix size written by new_values()). `limit` bounds p (no further than the hit)."""
    out = []
    try:
        head = bytes(read(start, 48))
    except READ_ERRORS:
        return out
    for p in range(8, 49, 8):
        if p <= limit and head[p - 1] == p:
            out.append(p)
    return out


# ---------------------------------------------------------------------------------------
# Stacks
# ---------------------------------------------------------------------------------------
RED_ZONE = 128              # x86-64 SysV: a leaf function may use 128 bytes below sp


def stack_slot(frames, addr):
    """Which frame of one thread holds the stack word at `addr`. `frames` is the thread's
    [(sp, payload)], innermost first (sp increasing); a frame spans [its sp, its caller's
    sp). Returns ('dead', None) below the innermost sp and its red zone (a stale word),
    ('frame', payload) inside a frame, or ('outermost', payload) at or above the outermost
    frame's sp: that frame's own words, or whatever lies above it (the thread's start
    area: environment, thread descriptor, TLS)."""
    if not frames or addr < frames[0][0] - RED_ZONE:
        return "dead", None
    for i in range(len(frames) - 1):
        if addr < frames[i + 1][0]:
            return "frame", frames[i][1]
    return "outermost", frames[-1][1]
