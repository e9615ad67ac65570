"""Tests of the ring format's reader (gdbext/pyref/reader/ringformat.py: the header and its
thread table, finding headers without a symbol) and of call sites (reader/sites.py), on
images built by tests/ringimage.py as the format spec (docs/ring-format.md) lays them out.
No gdb, no C."""
import struct

import pytest

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.errors import RingError
from pyref.reader import ringformat
from pyref.reader.decode import decode_ring
from pyref.reader.ringformat import parse_header, parse_threads, scan_for_headers
from pyref.reader.sites import read_site
from ringimage import FIELDS, PAGE, Mem, Writer, invariant


def header_bytes(**over):
    w = Writer()
    w.fields.update(over)
    w.flush()
    return bytes(w.hdr[:256])


# ---------------------------------------------------------------------------------------
# Header validation
# ---------------------------------------------------------------------------------------
def test_header_parses_all_fields():
    w = Writer(capacity=16, max_threads=3, seq=77)
    w.fields.update(pid=42, flags=1, lost_nothread=5, init_time_ns=99, forks=2)
    w.register(0)
    struct.pack_into("<II", w.hdr, 96, 5, 0x030B04F0)      # hooks, py_version
    h = parse_header(w.hdr, w.addr)
    assert (h.hooks, h.py_version) == (5, 0x030B04F0)
    assert (h.addr, h.version, h.header_size, h.record_size, h.capacity) == \
        (w.addr, 1, 256 + 3 * 64, 32, 16)
    assert (h.word_size, h.byte_order, h.field_count, h.pid) == (8, 1, 8, 42)
    assert h.fields == ringformat.FIELDS
    assert (h.thread_table_off, h.thread_desc_size, h.max_threads) == (256, 64, 3)
    assert (h.flags, h.disabled, h.threads_registered, h.lost_nothread) == (1, True, 1, 5)
    assert (h.init_time_ns, h.forks, h.seq) == (99, 2, 77)
    threads = parse_threads(w.hdr, h)
    assert len(threads) == 3
    t = threads[0]
    assert (t.index, t.ring, t.head, t.mask, t.seqp) == (0, w.threads[0]["ring"], 0, 15,
                                                          w.addr + 128)
    assert (t.busy, t.state, t.state_name, t.os_tid, t.serial) == (0, 1, "live", 1000, 1)


@pytest.mark.parametrize("over, why", [
    (dict(magic=0x1122334455667788), "bad magic"),
    (dict(magic=int.from_bytes(ringformat.MAGIC_BYTES, "big")), "byte order mismatch"),
    (dict(version=3), "unknown version 3 at 0x10000 (this reader knows 1 and 2)"),
    (dict(version=0), "unknown version 0"),
    (dict(byte_order=2), "byte order mismatch"),
    (dict(word_size=4), "word size mismatch"),
    (dict(record_size=16), "record_size 16"),
    (dict(record_size=36), "record_size 36"),
    (dict(capacity=12), "capacity 12 is not a power of two"),
    (dict(capacity=0), "capacity 0 is not a power of two"),
    (dict(capacity=1 << 27), "maximum"),
    (dict(field_count=9), "field table differs: field_count 9"),
    (dict(fields=FIELDS[:4] + bytes([16, 4]) + FIELDS[6:]),
     "field table differs: refcnt at offset 16 size 4"),
    (dict(fields=FIELDS[:14] + bytes([24, 4])), "field table differs: commit"),
    (dict(header_size=1000), "header_size 1000"),
    (dict(max_threads=0), "max_threads 0"),
    (dict(thread_desc_size=32), "thread_desc_size 32"),
    (dict(thread_table_off=128), "thread_table_off 128"),
])
def test_header_rejected(over, why):
    with pytest.raises(RingError) as e:
        parse_header(header_bytes(**over), 0x10000)
    msg = str(e.value)
    assert why in msg
    assert "\n" not in msg


def test_header_truncated():
    with pytest.raises(RingError, match="truncated header at 0x0: 100 of 256 bytes"):
        parse_header(header_bytes()[:100])
    w = Writer(max_threads=4)
    h = parse_header(w.hdr)
    with pytest.raises(RingError, match="thread table needs 512 bytes, got 300"):
        parse_threads(bytes(w.hdr[:300]), h)
    assert len(parse_threads(bytes(w.hdr[:300]), h, partial=True)) == 0
    assert len(parse_threads(bytes(w.hdr[:400]), h, partial=True)) == 2


def test_header_unreadable():
    with pytest.raises(RingError, match="header at 0x1234 unreadable"):
        decode_ring(Mem().read, 0x1234)


def test_gdb_style_read_errors_are_handled():
    """gdb.MemoryError derives from RuntimeError: a raw Inferior.read_memory works too."""
    w = Writer()
    w.register(0, ring=0x7000000, map_ring=False)
    w.record(0, 0x100)

    def read(addr, size):
        try:
            return w.mem.read(addr, size)
        except MemoryError:
            raise RuntimeError("Cannot access memory at address %#x" % addr)
    ring = invariant(decode_ring(read, w.addr))
    assert ring.unreadable == 1
    with pytest.raises(RingError):
        decode_ring(read, 0x99999000)


# ---------------------------------------------------------------------------------------
# Scanning for headers
# ---------------------------------------------------------------------------------------
def test_scan_for_headers():
    mem = Mem()
    region = mem.map(0x400000, 3 << 20)                    # spans several 1 MiB chunks
    good = Writer(mem=Mem(), addr=0, max_threads=2)
    bad = Writer(mem=Mem(), addr=0, max_threads=2)
    bad.fields["version"] = 9
    bad.flush()
    hb, bb = bytes(good.hdr[:512]), bytes(bad.hdr[:512])
    region[0x150000:0x150000 + 512] = hb                   # page-aligned, valid
    region[0x2FF000:0x2FF000 + 512] = hb                   # last page before a chunk edge
    region[0x180000:0x180000 + 512] = bb                   # page-aligned, invalid
    region[0x190010:0x190010 + 512] = hb                   # valid but not page-aligned
    region[0x1A0008:0x1A0008 + 8] = ringformat.MAGIC_BYTES
    tail = mem.map(0x900000, 0x1000 + 100)                 # header straddles region end
    tail[0x1000:0x1000 + 100] = hb[:100]
    rejects = []
    found = scan_for_headers(mem.read, mem.ranges() + [(0x10000000, 0x10100000)], rejects)
    assert found == [0x400000 + 0x150000, 0x400000 + 0x2FF000]
    why = dict(rejects)
    assert "unknown version 9" in why[0x400000 + 0x180000]
    assert "unreadable" in why[0x901000]
    assert set(why) == {0x400000 + 0x180000, 0x901000}
    rejects = []
    assert scan_for_headers(mem.read, mem.ranges(), rejects, max_bytes=2 << 20) == \
        [0x400000 + 0x150000]
    assert any("scan budget" in why for _, why in rejects)


def test_scan_finds_a_ring_that_decodes():
    w = Writer(addr=0x30000)
    w.register(0)
    w.record(0, 0x100)
    found = scan_for_headers(w.mem.read, [(0x20000, 0x40000)] + w.mem.ranges())
    assert found == [0x30000]
    assert decode_ring(w.mem.read, found[0]).records[0].obj == 0x100


# ---------------------------------------------------------------------------------------
# Sites
# ---------------------------------------------------------------------------------------
def test_read_site():
    mem = Mem()
    data = mem.map(0x8000, 2 * PAGE)
    struct.pack_into("<IIQQQ", data, 0, ringformat.SITE_MAGIC, 42, 0x8100, 0x8200, 0x8300)
    data[0x100:0x10a] = b"ext.c\0\0\0\0\0"
    data[0x200:0x209] = b"do_\xffwork\0"
    data[0x300:0x30a] = b"Py_INCREF\0"
    struct.pack_into("<IIQQQ", data, 0x40, ringformat.SITE_MAGIC, 7, 0x8100, 0x8200, 0)
    struct.pack_into("<IIQQQ", data, 0x80, 0x12345678, 7, 0x8100, 0x8200, 0)
    struct.pack_into("<IIQQQ", data, 0xC0, ringformat.SITE_MAGIC, 9, 0x9F00, 0xDEAD0000, 0)
    data[0x1F00:0x2000] = b"x" * 0x100                      # runs to the end of the mapping
    cache = {}
    s = read_site(mem.read, 0x8000, cache)
    assert (s.file, s.line, s.func, s.api) == ("ext.c", 42, "do_\ufffdwork", "Py_INCREF")
    assert s.short() == "ext.c:42 (do_\ufffdwork)"
    assert read_site(mem.read, 0x8040).api is None
    assert read_site(mem.read, 0x8080) is None
    assert read_site(mem.read, 0) is None
    assert read_site(mem.read, 0x1000, cache) is None
    odd = read_site(mem.read, 0x80C0)
    assert odd.file == "x" * 0x100 + "..." and odd.func == "?"
    data[0x100] = ord("E")
    assert read_site(mem.read, 0x8000, cache).file == "ext.c"    # served from the cache
    assert read_site(mem.read, 0x8000).file == "Ext.c"
    assert 0x1000 in cache and cache[0x1000] is None
