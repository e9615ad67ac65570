"""Tests of gdbext/pyref/reader/corefile.py (and decode.py through it) on REAL core dumps: small C
programs built here with gcc crash with abort(), the kernel (or gdb's gcore, where the
kernel pipes cores elsewhere) writes the core, and the gdb-free reader must find in it
what the program printed before dying."""
import os
import re
import shutil
import subprocess

import pytest

from pyreftest import BUILD, ROOT, ensure_runtime, run_to_core
from pyref.errors import RingError
from pyref.reader import decode, ringformat, sites
from pyref.rules import events
from pyref.reader.corefile import Core, CoreError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

LIB_C = r"""
/* Exported symbols of a shared library: found through .dynsym even when stripped. The
 * program reaches them only through functions, so no copy relocation moves them into
 * the executable. */
const char coretest_rodata[] = "read-only data served from the file on disk";
unsigned long long coretest_data[2] = {0xfeedfacecafebeefULL, 7};
const char *coretest_rodata_ptr(void) { return coretest_rodata; }
unsigned long long *coretest_data_ptr(void) { return coretest_data; }
"""

PROG_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
const char *coretest_rodata_ptr(void);
unsigned long long *coretest_data_ptr(void);
unsigned long long coretest_global[4] = {0x1122334455667788ULL, 0x99aabbccddeeff00ULL, 3, 4};
static unsigned long long coretest_hidden[2] = {0x5151515151515151ULL, 0};
int main(void)
{
    size_t n = 1 << 20;
    unsigned long long *buf = malloc(n);
    for (size_t i = 0; i < n / 8; i++)
        buf[i] = i * 0x9E3779B97F4A7C15ULL;
    coretest_hidden[1] = (unsigned long long)(size_t)buf;
    fprintf(stderr, "buf=%p global=%p hidden=%p rodata=%p data=%p\n", (void *)buf,
            (void *)coretest_global, (void *)coretest_hidden, (void *)coretest_rodata_ptr(),
            (void *)coretest_data_ptr());
    abort();
}
"""

RING_C = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include "pyref/ring.h"
static const struct pyref_site site_a = {PYREF_SITE_MAGIC, 4242, "ringprog.c", "worker",
                                         "Py_INCREF"};
static long objs[4];
static void *worker(void *arg)
{
    for (int i = 0; i < 1000; i++)
        pyref_record(&objs[1], &site_a, i + 1, PYREF_OP_INCREF, 1);
    return arg;
}
int main(void)
{
    pthread_t t;
    pyref_record(&objs[0], &site_a, 1, PYREF_OP_INCREF, 1);
    pyref_record(&objs[0], &site_a, 2, PYREF_OP_DECREF, -1);
    pyref_record(&objs[0], &site_a, 1, PYREF_OP_DEALLOC, -1);
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    pyref_record(&objs[2], NULL, 5, PYREF_OP_BORROW, 0);
    pyref_record_aux(&objs[3], 1, 7);
    fprintf(stderr, "objs=%p,%p,%p,%p ring=%p site=%p\n", (void *)&objs[0], (void *)&objs[1],
            (void *)&objs[2], (void *)&objs[3], (void *)pyref_ring, (void *)&site_a);
    abort();
}
"""


def gcc(*args, cwd):
    subprocess.run(["gcc"] + list(args), cwd=cwd, check=True, capture_output=True, text=True)


def printed(stderr):
    return {k: int(v, 16) for k, v in re.findall(r"(\w+)=(0x[0-9a-f]+)", stderr)}


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """(directory, core path, addresses the program printed)."""
    d = tmp_path_factory.mktemp("core")
    (d / "lib.c").write_text(LIB_C)
    (d / "prog.c").write_text(PROG_C)
    gcc("-g", "-O0", "-fPIC", "-shared", "lib.c", "-o", "libcoretest.so", cwd=d)
    subprocess.run(["strip", "--strip-all", str(d / "libcoretest.so")], check=True)
    gcc("-g", "-O0", "prog.c", "-o", "prog", "-L.", "-lcoretest", "-Wl,-rpath,$ORIGIN", cwd=d)
    core, p = run_to_core(str(d / "prog"), [], cwd=str(d))
    return d, core, printed(p.stderr)


def test_reads_heap_and_globals(crashed):
    d, path, addr = crashed
    with Core(path) as core:
        assert not core.truncated and core.truncated_at is None
        assert core.signal == 6 and core.pid in core.tids
        assert os.path.realpath(core.exe_path) == os.path.realpath(str(d / "prog"))
        buf = core.read(addr["buf"], 1 << 20)
        words = memoryview(buf).cast("Q")
        assert all(words[i] == (i * 0x9E3779B97F4A7C15) & (2 ** 64 - 1)
                   for i in range(0, len(words), 997))
        assert core.read(addr["global"], 16) == bytes.fromhex(
            "8877665544332211" "00ffeeddccbbaa99")
        hidden = core.read(addr["hidden"], 16)
        assert int.from_bytes(hidden[8:], "little") == addr["buf"]
        # .rodata of the library: not in the core, read from the mapped file
        assert core.read(addr["rodata"], 43) == b"read-only data served from the file on disk"
        assert sites.read_cstring(core.read, addr["rodata"]).startswith("read-only data")
        assert core.read(addr["data"], 8) == (0xFEEDFACECAFEBEEF).to_bytes(8, "little")


def test_symbols(crashed):
    d, path, addr = crashed
    with Core(path) as core:
        assert core.symbol("coretest_global") == addr["global"]       # exe .symtab
        assert core.symbol("coretest_hidden") == addr["hidden"]       # a static, .symtab
        assert core.symbol("coretest_rodata") == addr["rodata"]       # stripped lib .dynsym
        assert core.symbol("coretest_data") == addr["data"]
        assert core.symbol("coretest_data_ptr") is not None           # a function
        assert core.symbol("malloc") is not None                      # libc
        assert core.symbol("no_such_symbol_anywhere") is None
        hits = core.symbols("coretest_data")
        assert [os.path.basename(p) for p, _ in hits] == ["libcoretest.so"]


def test_unmapped_address(crashed):
    with Core(crashed[1]) as core:
        with pytest.raises(MemoryError, match="not mapped"):
            core.read(0x10, 8)
        with pytest.raises(MemoryError):
            core.read(2 ** 64 - 4, 8)
        with pytest.raises(ValueError):
            core.read(-1, 8)


def test_regions(crashed):
    d, path, addr = crashed
    with Core(path) as core:
        regions = core.regions()
        assert any(s <= addr["buf"] < e for s, e in regions)
        assert any(s <= addr["global"] < e for s, e in regions)
        assert not any(s <= addr["rodata"] < e for s, e in regions)
        assert len(core.regions(writable=False)) >= len(regions)


def test_truncated_core(crashed, tmp_path):
    d, path, addr = crashed
    with Core(path) as core:
        seg = core._segment_at(addr["buf"])
        cut = seg.offset + (addr["buf"] - seg.vaddr) + 10000
    short = tmp_path / "core.short"
    with open(path, "rb") as src, open(short, "wb") as dst:
        dst.write(src.read(cut))
    with Core(str(short)) as core:
        assert core.truncated and core.truncated_at == cut
        assert core.read(addr["buf"], 10000)[:8] == bytes(8)   # buf[0] = 0
        with pytest.raises(MemoryError, match="core truncated at byte %d" % cut):
            core.read(addr["buf"] + 20000, 8)
        with pytest.raises(MemoryError, match="truncated"):
            core.read(addr["buf"], 20000)               # straddles the cut
        assert core.read(addr["rodata"], 9) == b"read-only"    # still from the file
        assert all(e <= addr["buf"] + 10000 or s > addr["buf"] for s, e in core.regions())


def test_not_a_core(tmp_path):
    p = tmp_path / "junk"
    p.write_bytes(b"hello")
    with pytest.raises(CoreError, match="too short"):
        Core(str(p))
    p.write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(CoreError, match="not ELF64"):
        Core(str(p))
    with pytest.raises(CoreError, match="not a core"):
        Core("/bin/true")


def test_stale_and_moved_files(crashed, tmp_path):
    d, path, addr = crashed
    lib = str(d / "libcoretest.so")
    moved = tmp_path / "elsewhere.so"
    shutil.copy(lib, moved)
    with Core(path, path_map={os.path.realpath(lib): str(moved)}) as core:
        assert core.read(addr["rodata"], 9) == b"read-only"
    backup = tmp_path / "backup.so"
    shutil.copy(lib, backup)
    try:
        shutil.copy(str(d / "prog"), lib)                  # "rebuilt" since the crash
        with Core(path) as core:
            with pytest.raises(MemoryError, match="differs"):
                core.read(addr["rodata"], 9)
            assert core.symbol("coretest_data") is None
            assert any("differs" in w for w in core.warnings)
        os.unlink(lib)
        with Core(path) as core:
            with pytest.raises(MemoryError, match="cannot be opened"):
                core.read(addr["rodata"], 9)
    finally:
        shutil.copy(backup, lib)


# ---------------------------------------------------------------------------------------
# A real ring in a real core
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ring_core(tmp_path_factory):
    ensure_runtime()
    d = tmp_path_factory.mktemp("ringcore")
    (d / "ringprog.c").write_text(RING_C)
    gcc("-g", "-O1", "-pthread", "-I" + os.path.join(ROOT, "c_helpers", "include"),
        "ringprog.c", "-o", "ringprog", "-L" + BUILD, "-lpyref", "-Wl,-rpath," + BUILD, cwd=d)
    core, p = run_to_core(str(d / "ringprog"), [], cwd=str(d),
                          env={"PYREF_RING_RECORDS": "256", "PYREF_RING_THREADS": "8"})
    return core, printed(p.stderr)


def test_ring_from_core(ring_core):
    path, addr = ring_core
    with Core(path) as core:
        sym = core.symbol("pyref_ring")
        assert sym is not None
        hdr_addr = int.from_bytes(core.read(sym, 8), "little")
        assert hdr_addr == addr["ring"]
        assert ringformat.scan_for_headers(core.read, core.regions()) == [hdr_addr]
        ring = decode.decode_ring(core.read, hdr_addr)
        assert ring.header.pid == core.pid and ring.header.capacity == 256
        assert ring.header.threads_registered == 2 and ring.header.seq == 1004
        assert (ring.written, ring.decoded, ring.overwritten, ring.torn, ring.unreadable) == \
            (1005, 261, 744, 0, 0)
        assert ring.errors == [] and ring.threads_seen == 2
        assert [t.state_name for t in ring.threads] == ["live", "exited"] + ["free"] * 6
        recs = ring.records
        assert len(recs) == 260
        main = [r for r in recs if r.thread == 0]
        assert [r.op_name for r in main] == ["INCREF", "DECREF", "DEALLOC", "BORROW"]
        assert [r.seq for r in main] == [0, 1, 2, 1003]
        borrow = main[-1]
        assert [(a.obj, a.site, a.refcnt) for a in borrow.aux] == [(addr["objs"] + 24, 1, 7)]
        work = [r for r in recs if r.thread == 1]
        assert [r.refcnt for r in work] == list(range(745, 1001))
        assert [r.pos for r in work] == list(range(744, 1000))
        assert ring.records_for(addr["objs"] + 8) == work
        assert [len(x) for x in events.lifetimes(ring.records_for(addr["objs"]))] == [3]
        site = sites.read_site(core.read, work[0].site)
        assert (site.file, site.line, site.func, site.api) == \
            ("ringprog.c", 4242, "worker", "Py_INCREF")


def test_ring_in_truncated_core(ring_core, tmp_path):
    """A core holds memory in address order. The header is mapped low (below the rings),
    so a cut inside a ring keeps it: the ring's lost part is counted unreadable, and the
    header scan still finds the header. Where the header could not be mapped low (the
    kernel's choice, above the rings), the cut loses it and decode_ring says so."""
    path, addr = ring_core
    with Core(path) as core:
        ring = decode.decode_ring(core.read, addr["ring"])
        worker_ring = ring.threads[1].ring
        seg = core._segment_at(worker_ring)
        cut = seg.offset + (worker_ring - seg.vaddr) + 4096
        hseg = core._segment_at(addr["ring"])
        header_off = hseg.offset + addr["ring"] - hseg.vaddr
    short = tmp_path / "core.short"
    with open(path, "rb") as src, open(short, "wb") as dst:
        dst.write(src.read(cut))
    with Core(str(short)) as core:
        if header_off < cut:                               # the header mapped low
            ring = decode.decode_ring(core.read, addr["ring"])
            assert ring.unreadable >= 128
            assert any("unreadable" in e for e in ring.errors)
            assert ringformat.scan_for_headers(core.read, core.regions()) == [addr["ring"]]
        else:
            with pytest.raises(RingError, match="unreadable: .*core truncated at byte"):
                decode.decode_ring(core.read, addr["ring"])
            assert ringformat.scan_for_headers(core.read, core.regions()) == []


def test_mutated_cores_fail_cleanly(crashed, tmp_path):
    """Corrupt program headers and notes: Core either refuses the file with CoreError or
    opens it, and then reads fail only with MemoryError/ValueError."""
    import random
    d, path, addr = crashed
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    with Core(path) as core:
        notes_end = max(s.offset for s in core.segments if s.filesz) if core.segments else 4096
    span = min(len(head), max(4096, min(notes_end, 64 << 10)))
    rnd = random.Random(99)
    target = tmp_path / "core.mut"
    for case in range(150):
        buf = bytearray(head)
        for _ in range(rnd.randrange(1, 6)):
            k = rnd.randrange(span)
            buf[k] = rnd.choice([0, 0xFF, rnd.randrange(256), buf[k] ^ 1 << rnd.randrange(8)])
        target.write_bytes(bytes(buf))
        try:
            core = Core(str(target))
        except CoreError:
            continue
        with core:
            for a in list(addr.values()) + [0, 2 ** 64 - 1]:
                try:
                    core.read(a, 64)
                except (MemoryError, ValueError):
                    pass
            core.regions()
            core.symbol("coretest_data")
            core.exe_path, core.tids, core.mappings
