"""The ring format (versions 1 and 2, docs/ring-format.md) as a reader sees it: the
constants, the header and its thread table (parse_header, parse_threads, checked against the
C structs' DWARF by tests/gdb/test_layout.py), the decoded Record, format 2's origin word
(origin_fields), sequence numbers restored to 64 bits, and finding headers in memory without
a symbol (scan_for_headers). The engine that classifies and decodes a thread's slots is
reader/decode.py.

Versions: 1 writes a BORROW or STEAL with the object's count in `refcnt` and its container
in an AUX CONTAINER record after it; 2 packs container, count and index into the record's
`refcnt` and `delta` (the origin word), with an AUX ORIGIN after it only when they do not
fit. A reader of either gives the same Record for it (reader/decode.py): `refcnt` the
count, `delta` 0, the container as an AUX CONTAINER in `aux`.
"""
from __future__ import annotations

import struct
import sys
from collections import namedtuple
from dataclasses import dataclass

from pyref.errors import READ_ERRORS, RingError
from pyref.reader.bulk import CHUNK, PAGE, first_line, read_pieces

# ---------------------------------------------------------------------------------------
# Format constants (docs/ring-format.md)
# ---------------------------------------------------------------------------------------
MAGIC = 0x474E524645525950                 # "PYREFRNG" little-endian
MAGIC_BYTES = MAGIC.to_bytes(8, "little")
SITE_MAGIC = 0x54535950                    # "PYST"
VERSION = 2                                # what the C side writes (ring.h)
VERSIONS = (1, 2)                          # what this reader decodes
HEADER_FIXED = 256
RECORD_SIZE = 32
THREAD_TABLE_OFF = 256
THREAD_DESC_SIZE = 64
SEQ_OFF = 128                              # header.seq
MAX_CAPACITY = 1 << 26                     # PYREF_RING_RECORDS maximum
MAX_THREADS = 4096                         # PYREF_RING_THREADS maximum
MAX_RECORD_SIZE = 1024                     # larger is not a plausible v1 header
MAX_DESC_SIZE = 1024
SCAN_MAX_BYTES = 16 << 30                  # scan_for_headers' default budget (~5 s of reads)

INCREF, DECREF, DEALLOC, NEW, BORROW, STEAL, FREE, AUX, FORK, MARK = range(1, 11)
OPS = {1: "INCREF", 2: "DECREF", 3: "DEALLOC", 4: "NEW", 5: "BORROW", 6: "STEAL",
       7: "FREE", 8: "AUX", 9: "FORK", 10: "MARK"}
AUX_CONTAINER = 1                          # AUX kind: obj = container, refcnt = index
AUX_TEXT = 0x12                            # AUX kind: 16 bytes of a MARK's label
AUX_ORIGIN = 0x13                          # AUX kind (v2): obj = index, refcnt = count
ORIGIN_PTR_MASK = 0x0000FFFFFFFFFFF8       # v2 origin word: the container's bits
MARK_MAX = 240                             # PYREF_MARK_MAX: label bytes a MARK carries
OP_MASK = 0x3F
SHARED = 0x40
IMMORTAL = 0x80
FLAG_DISABLED = 1
THREAD_STATES = {0: "free", 1: "live", 2: "exited"}

FIELD_NAMES = ("obj", "site", "refcnt", "seq", "op", "delta", "tid", "commit")
FIELDS = ((0, 8), (8, 8), (16, 8), (24, 4), (28, 1), (29, 1), (30, 2), (24, 8))

_HEADER = struct.Struct("<QIIIIBBHI16sIIIIQQQQII24xQ120x")
_DESC = struct.Struct("<QQQQQIIQH6x")
assert _HEADER.size == HEADER_FIXED and _DESC.size == THREAD_DESC_SIZE
_M32 = 0xFFFFFFFF
_M64 = (1 << 64) - 1
_LITTLE_HOST = sys.byteorder == "little"


# ---------------------------------------------------------------------------------------
# Header and thread table
# ---------------------------------------------------------------------------------------
@dataclass
class Header:
    addr: int
    magic: int
    version: int
    header_size: int
    record_size: int
    capacity: int
    word_size: int
    byte_order: int
    field_count: int
    pid: int
    fields: tuple            # ((offset, size), ...) for FIELD_NAMES
    thread_table_off: int
    thread_desc_size: int
    max_threads: int
    flags: int
    threads_registered: int
    lost_nothread: int
    init_time_ns: int
    forks: int
    seq: int
    hooks: int = 0           # header+96: PYREF_HOOK_* bits (pyref/hooks.h), 0 if reserved
    py_version: int = 0      # header+100: PY_VERSION_HEX of the extension that set hooks

    @property
    def disabled(self) -> bool:
        """Recording was switched off with PYREF=off."""
        return bool(self.flags & FLAG_DISABLED)

    @property
    def seq_addr(self) -> int:
        return self.addr + SEQ_OFF


@dataclass
class Thread:
    index: int
    ring: int
    head: int
    mask: int
    seqp: int
    lost: int
    busy: int
    state: int
    os_tid: int
    serial: int

    @property
    def state_name(self) -> str:
        return THREAD_STATES.get(self.state, "state %d" % self.state)


def parse_header(buf, addr: int = 0) -> Header:
    """Parses and validates the fixed part of a ring header (the first 256 bytes of `buf`).
    Raises RingError naming the first check that fails (the spec's "A reader must reject"
    list, plus bounds that keep a reader's work finite)."""
    buf = bytes(buf[:HEADER_FIXED])
    if len(buf) < HEADER_FIXED:
        raise RingError("truncated header at %#x: %d of %d bytes" % (addr, len(buf), HEADER_FIXED))
    (magic, version, header_size, record_size, capacity, word_size, byte_order, field_count,
     pid, fields_raw, tt_off, desc_size, max_threads, flags, registered, lost_nothread,
     init_ns, forks, hooks, py_version, seq) = _HEADER.unpack(buf)
    if magic != MAGIC:
        if magic == int.from_bytes(MAGIC_BYTES, "big"):
            raise RingError("byte order mismatch at %#x: header is big-endian, this reader "
                            "handles little-endian targets" % addr)
        raise RingError("bad magic %#018x at %#x (want %#018x)" % (magic, addr, MAGIC))
    if version not in VERSIONS:
        raise RingError("unknown version %d at %#x (this reader knows %s)"
                        % (version, addr, " and ".join(map(str, VERSIONS))))
    if byte_order != 1:
        raise RingError("byte order mismatch: header says %s (%d), target is little-endian"
                        % ({2: "big-endian"}.get(byte_order, "unknown"), byte_order))
    if word_size != 8:
        raise RingError("word size mismatch: header says %d-byte words, target has 8"
                        % word_size)
    if record_size < RECORD_SIZE or record_size % 8 or record_size > MAX_RECORD_SIZE:
        raise RingError("bad record_size %d (want a multiple of 8 from %d to %d)"
                        % (record_size, RECORD_SIZE, MAX_RECORD_SIZE))
    if capacity == 0 or capacity & (capacity - 1):
        raise RingError("capacity %d is not a power of two" % capacity)
    if capacity > MAX_CAPACITY:
        raise RingError("capacity %d above the format's maximum 2^26" % capacity)
    fields = tuple((fields_raw[2 * i], fields_raw[2 * i + 1]) for i in range(8))
    if field_count != len(FIELDS):
        raise RingError("field table differs: field_count %d, expected %d"
                        % (field_count, len(FIELDS)))
    for name, got, want in zip(FIELD_NAMES, fields, FIELDS):
        if got != want:
            raise RingError("field table differs: %s at offset %d size %d, expected offset "
                            "%d size %d" % (name, got[0], got[1], want[0], want[1]))
    if tt_off < HEADER_FIXED or tt_off % 8 or tt_off > 65536:
        raise RingError("bad thread_table_off %d (want 256)" % tt_off)
    if desc_size < THREAD_DESC_SIZE or desc_size % 8 or desc_size > MAX_DESC_SIZE:
        raise RingError("bad thread_desc_size %d (want 64)" % desc_size)
    if not 1 <= max_threads <= MAX_THREADS:
        raise RingError("bad max_threads %d (want 1..%d)" % (max_threads, MAX_THREADS))
    want_size = tt_off + max_threads * desc_size
    if header_size != want_size:
        raise RingError("bad header_size %d, expected %d (thread_table_off + max_threads x "
                        "thread_desc_size)" % (header_size, want_size))
    return Header(addr, magic, version, header_size, record_size, capacity, word_size,
                  byte_order, field_count, pid, fields, tt_off, desc_size, max_threads, flags,
                  registered, lost_nothread, init_ns, forks, seq, hooks, py_version)


def parse_threads(buf, header: Header, partial: bool = False) -> list:
    """All `max_threads` descriptors of the thread table in `buf` (the header's bytes from
    its start). A `buf` shorter than header_size raises RingError unless `partial`, which
    returns the descriptors that `buf` holds whole."""
    buf = memoryview(buf)
    if len(buf) < header.header_size and not partial:
        raise RingError("truncated header at %#x: thread table needs %d bytes, got %d"
                        % (header.addr, header.header_size, len(buf)))
    out = []
    step = header.thread_desc_size
    for i in range(header.max_threads):
        off = header.thread_table_off + i * step
        if off + step > len(buf):
            break
        out.append(Thread(i, *_DESC.unpack_from(buf, off)))
    return out


# ---------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------
class Record(namedtuple("_RecordBase",
                        "obj site refcnt delta op flags seq32 seq tid thread pos aux")):
    """One decoded transition. `refcnt` is the count before, `after` the count after;
    `op` is masked (1..63), `flags` holds SHARED/IMMORTAL; `seq` is the restored 64-bit
    sequence number, `seq32` the stored low half; `tid` the writer's registration serial;
    `thread` the descriptor index; `pos` the ring position; `aux` a tuple of the AUX
    records attached to this one (empty for most)."""
    __slots__ = ()

    @property
    def after(self) -> int:
        return self[2] + self[3]

    @property
    def op_name(self) -> str:
        return OPS.get(self[4]) or "op %d" % self[4]

    @property
    def shared(self) -> bool:
        return bool(self[5] & SHARED)

    @property
    def immortal(self) -> bool:
        return bool(self[5] & IMMORTAL)


def mark_label(rec) -> tuple:
    """(label, whole) of a MARK record: its label from the AUX TEXT records attached to it
    (`obj` bytes of them), and whether that is all of it (False when the writer cut it at
    MARK_MAX bytes or text records were overwritten or torn). Undecodable bytes become
    U+FFFD."""
    want = min(rec.obj, MARK_MAX)
    raw = b"".join((a.obj & _M64).to_bytes(8, "little") + (a.refcnt & _M64).to_bytes(8, "little")
                   for a in rec.aux if a.site == AUX_TEXT)[:want]
    return raw.decode("utf-8", "replace"), len(raw) == want and rec.refcnt == rec.obj


def origin_fields(word: int, delta_byte: int):
    """(container, count, index) of a format-2 BORROW or STEAL from its origin word (the
    record's `refcnt`, any sign) and its `delta` byte (docs/ring-format.md, "Origin
    records"): count and index None when the code is 0 (an AUX ORIGIN holds them), index
    -1 when the call named none, container 0 when it named none (or an AUX CONTAINER
    names it)."""
    word &= _M64
    code = (word >> 48) << 11 | (word & 7) << 8 | (delta_byte & 0xFF)
    container = word & ORIGIN_PTR_MASK
    if code == 0:
        return container, None, None
    if code >> 26:
        return container, code >> 8 & 0x3FFFF, (code & 0xFF) - 1
    return container, code >> 18 & 0xFF, (code & 0x3FFFF) - 1


def restore_seq(head_seq: int, s: int) -> int:
    """The 64-bit sequence number of a record whose low half is `s`, given the header's
    `seq` (see the module docstring for records ahead of the header)."""
    v = head_seq - ((head_seq - s) & _M32)
    return v if v >= 0 else head_seq + ((s - head_seq) & _M32)


# ---------------------------------------------------------------------------------------
# Finding headers without a symbol
# ---------------------------------------------------------------------------------------
def scan_for_headers(read, regions, rejects=None, chunk=CHUNK,
                     max_bytes=SCAN_MAX_BYTES) -> list:
    """Addresses of valid ring headers in `regions` ([(start, end)], readable-writable
    ranges): the magic at a page-aligned address followed by a header that parse_header
    accepts. Only the first 8 bytes of each page are compared (one strided memoryview per
    1 MiB chunk). At most `max_bytes` are read in all (sanitizers reserve terabytes of
    shadow memory). If `rejects` is a list, (addr, reason) is appended for each
    page-aligned magic whose header fails validation, and (start, reason) for a region
    left unscanned for the budget."""
    found = []
    chunk = max(PAGE, chunk // PAGE * PAGE)
    budget = max_bytes
    for start, end in regions:
        a = (start + PAGE - 1) // PAGE * PAGE
        while a < end:
            n = min(chunk, end - a)
            if n > budget:
                if rejects is not None:
                    rejects.append((a, "not scanned: %#x-%#x is past the scan budget of %d "
                                       "bytes" % (a, end, max_bytes)))
                break
            budget -= n
            for off, p in read_pieces(read, a, n, 1, n):
                nq = len(p) // 8
                if not nq:
                    continue
                firsts = memoryview(p)[:nq * 8].cast("B").cast("Q")[::PAGE // 8].tobytes() \
                    if _LITTLE_HOST else b"".join(p[k:k + 8] for k in range(0, nq * 8, PAGE))
                j = firsts.find(MAGIC_BYTES)
                while j != -1:
                    if j % 8 == 0:
                        at = a + off + (j // 8) * PAGE
                        k = at - a - off
                        hdr = p[k:k + HEADER_FIXED]
                        try:
                            if len(hdr) < HEADER_FIXED:
                                hdr = bytes(read(at, HEADER_FIXED))
                            parse_header(hdr, at)
                            found.append(at)
                        except RingError as e:
                            if rejects is not None:
                                rejects.append((at, str(e)))
                        except READ_ERRORS as e:
                            if rejects is not None:
                                rejects.append((at, "unreadable: " + first_line(e)))
                    j = firsts.find(MAGIC_BYTES, j + 1)
            a += n
    return sorted(set(found))
