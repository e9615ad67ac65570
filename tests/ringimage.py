"""A synthetic target for the ring reader's tests: a sparse address space (Mem) and a writer
(Writer) that builds a ring set in it the way c_helpers/ring.c and ring.h write one, field
by field as docs/ring-format.md lays it out. The header format here is the spec's, written
independently of gdbext/pyref/reader/ringformat.py's, so a test that decodes a Writer's
image checks the reader against the spec. No gdb, no C.
"""
import struct

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader import ringformat
from pyref.reader.ringformat import AUX, DEALLOC, DECREF, IMMORTAL, INCREF
from pyref.reader.decode import decode_ring

PAGE = 4096
M64 = (1 << 64) - 1
HDR = struct.Struct("<QIIIIBBHI16sIIIIQQQQ32xQ120x")
DESC = struct.Struct("<QQQQQIIQH6x")
FIELDS = bytes([0, 8, 8, 8, 16, 8, 24, 4, 28, 1, 29, 1, 30, 2, 24, 8])


def _signed(v):
    return v - (1 << 64) if v >> 63 else v


def _signed8(v):
    return v - 256 if v >= 128 else v


def spec_origin_code(count, index):
    """Format 2's origin code of (count, index), 0 when they do not fit (the spec's
    "Origin records" table, written out here independently of the reader's code)."""
    ix = (index + 1) & M64
    if 1 <= count <= 255 and ix < 1 << 18:
        return count << 18 | ix
    if 1 <= count < 1 << 18 and ix < 1 << 8:
        return 1 << 26 | count << 8 | ix
    return 0


def spec_origin_word(container, code):
    """(refcnt, delta) as stored (signed) of an origin record naming `container`."""
    word = container | (code >> 11) << 48 | (code >> 8 & 7)
    return _signed(word), _signed8(code & 0xFF)


class Mem:
    """Sparse address space of bytearrays; read() raises MemoryError outside them."""

    def __init__(self):
        self.regions = {}

    def map(self, base, size):
        buf = bytearray(size)
        self.regions[base] = buf
        return buf

    def read(self, addr, size):
        for base, buf in self.regions.items():
            if base <= addr and addr + size <= base + len(buf):
                return bytes(buf[addr - base:addr - base + size])
        raise MemoryError("cannot access memory at %#x" % addr)

    def ranges(self):
        return sorted((b, b + len(buf)) for b, buf in self.regions.items())


class Writer:
    """Builds a ring set in `mem` the way c_helpers/ring.c and ring.h write one."""

    def __init__(self, mem=None, addr=0x10000, capacity=8, max_threads=4, seq=0,
                 ring_base=0x1000000, version=1):
        self.mem = mem or Mem()
        self.addr = addr
        self.capacity = capacity
        self.max_threads = max_threads
        self.header_size = 256 + 64 * max_threads
        self.hdr = self.mem.map(addr, -(-self.header_size // PAGE) * PAGE)
        self.seq = seq
        self.registered = 0
        self.ring_base = ring_base
        self.threads = {}          # index -> dict of descriptor fields
        self.bufs = {}             # index -> ring bytearray
        self.fields = dict(magic=ringformat.MAGIC, version=version,
                           header_size=self.header_size,
                           record_size=32, capacity=capacity, word_size=8, byte_order=1,
                           field_count=8, pid=1234, fields=FIELDS, thread_table_off=256,
                           thread_desc_size=64, max_threads=max_threads, flags=0,
                           threads_registered=0, lost_nothread=0, init_time_ns=1,
                           forks=0, seq=seq)
        self.flush()

    # header ------------------------------------------------------------------------
    def flush(self):
        f = self.fields
        f["seq"] = self.seq
        f["threads_registered"] = self.registered
        HDR.pack_into(self.hdr, 0, f["magic"], f["version"], f["header_size"],
                      f["record_size"], f["capacity"], f["word_size"], f["byte_order"],
                      f["field_count"], f["pid"], f["fields"], f["thread_table_off"],
                      f["thread_desc_size"], f["max_threads"], f["flags"],
                      f["threads_registered"], f["lost_nothread"], f["init_time_ns"],
                      f["forks"], f["seq"])
        for i, t in self.threads.items():
            DESC.pack_into(self.hdr, 256 + 64 * i, t["ring"], t["head"], t["mask"],
                           t["seqp"], t["lost"], t["busy"], t["state"], t["os_tid"],
                           t["serial"])
        return self

    def register(self, i, map_ring=True, ring=None):
        self.registered += 1
        if ring is None:
            ring = self.ring_base + i * max(PAGE, self.capacity * 32) * 2
        # the ring's bytes; visible to the decoder only when mapped into the address space
        self.bufs[i] = self.mem.map(ring, self.capacity * 32) if map_ring \
            else bytearray(self.capacity * 32)
        self.threads[i] = dict(ring=ring, head=self.threads.get(i, {}).get("head", 0),
                               mask=self.capacity - 1, seqp=self.addr + 128, lost=0, busy=0,
                               state=1, os_tid=1000 + i, serial=self.registered & 0xFFFF)
        self.flush()
        return i

    def ring_buf(self, i):
        return self.bufs[i]

    # records -----------------------------------------------------------------------
    def slot_off(self, i, pos):
        return (pos & (self.capacity - 1)) * 32

    def put(self, i, pos, obj, site, refcnt, seq32, op, delta, tid):
        struct.pack_into("<QQqIBbH", self.ring_buf(i), self.slot_off(i, pos), obj, site,
                         refcnt, seq32 & 0xFFFFFFFF, op, delta, tid)

    def record(self, i, obj, op=INCREF, refcnt=1, delta=None, site=0x5000, advance=True):
        if delta is None:
            delta = {INCREF: 1, DECREF: -1, DEALLOC: -1}.get(op & 63, 0)
            if op & IMMORTAL:
                delta = 0
        t = self.threads[i]
        s = self.seq
        self.seq += 1
        self.put(i, t["head"], obj, site, refcnt, s, op, delta, t["serial"])
        if advance:
            t["head"] += 1
        self.flush()
        return s

    def aux(self, i, obj, kind=1, value=0):
        t = self.threads[i]
        prev = struct.unpack_from("<I", self.ring_buf(i), self.slot_off(i, t["head"] - 1) + 24)[0]
        self.put(i, t["head"], obj, kind, value, prev, AUX, 0, t["serial"])
        t["head"] += 1
        self.flush()

    def origin(self, i, obj, op, count, container=0, index=-1, site=0x5000, flags=0):
        """A BORROW or STEAL (`op`) of `obj` naming `container` at `index` (-1: none) with
        the object's `count`, as the C side writes it in this image's format version:
        version 1 the record (refcnt = count) and, for a container, an AUX CONTAINER;
        version 2 the origin word (spec, "Origin records"), written here from the spec's
        text, not from the reader's code. Returns the seq."""
        if self.fields["version"] < 2:
            s = self.record(i, obj, op=op | flags, refcnt=count, site=site)
            if container:
                self.aux(i, container, kind=1, value=index)
            return s
        fits = container & ~0x0000FFFFFFFFFFF8 == 0
        code = spec_origin_code(count, index) if fits else 0
        if code:
            word, delta = spec_origin_word(container, code)
            return self.record(i, obj, op=op | flags, refcnt=word, delta=delta, site=site)
        s = self.record(i, obj, op=op | flags, refcnt=container if fits else 0, delta=0,
                        site=site)
        self.aux(i, index & M64, kind=0x13, value=count)
        if not fits:
            self.aux(i, container, kind=1, value=index)
        return s

    def mark(self, i, label, cut=None):
        """A MARK as pyref_mark() writes it: the record (obj = bytes copied, refcnt = the
        label's length), then the label in AUX TEXT records of 16 bytes, one seq for all.
        `cut` copies only that many bytes (the writer's PYREF_MARK_MAX)."""
        raw = label.encode() if isinstance(label, str) else label
        n = len(raw) if cut is None else min(cut, len(raw))
        s = self.record(i, n, op=ringformat.MARK, refcnt=len(raw), site=0)
        t = self.threads[i]
        for k in range(0, n, 16):
            chunk = raw[k:min(k + 16, n)].ljust(16, b"\0")
            lo, hi = struct.unpack("<Qq", chunk)
            self.put(i, t["head"], lo, ringformat.AUX_TEXT, hi, s, AUX, 0, t["serial"])
            t["head"] += 1
        self.flush()
        return s

    def set_commit(self, i, pos, value):
        struct.pack_into("<Q", self.ring_buf(i), self.slot_off(i, pos) + 24, value)

    def decode(self):
        return decode_ring(self.mem.read, self.addr)


def invariant(ring):
    """Checks the spec's accounting of a decoded ring; returns the ring."""
    assert ring.written == ring.decoded + ring.overwritten + ring.torn + ring.unreadable + \
        ring.rejected
    return ring
