"""Fuzz harness for the ring reader (gdbext/pyref/reader/, no gdb): mutates valid ring images (bit flips,
bytes set to 0/0xff/random, header and descriptor fields set to edge values, regions cut
short or unmapped, descriptors pointed at other memory) and runs parse_header,
decode_ring (then every query on the result) and scan_for_headers on each. Nothing but
RingError may escape, the counters must add up, records_for must agree with the full
decode, and each case must take under a second.

    python3 tests/unit/fuzz_decode.py [CASES] [--seed S]     # the long run, e.g. 1000000
    python3 tests/unit/fuzz_decode.py --seed S --case I      # replay one failing case

As a pytest test it runs PYREF_FUZZ_CASES cases (default 10000) from a fixed seed
(PYREF_FUZZ_SEED to change it); a failure names the seed and case to replay.
"""
import os
import random
import struct
import sys
import time
import traceback

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TESTS)
sys.path.insert(0, os.path.join(os.path.dirname(TESTS), "gdbext"))

from pyref.errors import RingError                            # noqa: E402
from pyref.reader import decode, ringformat                   # noqa: E402
from pyref.reader.decode import build_index                   # noqa: E402
from pyref.reader.ringformat import (AUX, BORROW, DEALLOC, DECREF, IMMORTAL,  # noqa: E402
                                     INCREF, STEAL, scan_for_headers)
from pyref.rules.events import lifetimes                      # noqa: E402
from ringimage import Mem, Writer                             # noqa: E402

DEFAULT_SEED = 0x5EED
CASE_LIMIT_S = 1.0

# (offset, size) of every header field a mutation may set
HEADER_FIELDS = [(0, 8), (8, 4), (12, 4), (16, 4), (20, 4), (24, 1), (25, 1), (26, 2),
                 (28, 4), (32, 16), (48, 4), (52, 4), (56, 4), (60, 4), (64, 8), (72, 8),
                 (80, 8), (88, 8), (128, 8)]
DESC_FIELDS = [(0, 8), (8, 8), (16, 8), (24, 8), (32, 8), (40, 4), (44, 4), (48, 8), (56, 2)]


# ---------------------------------------------------------------------------------------
# Seed images
# ---------------------------------------------------------------------------------------
def seed_images():
    """A handful of valid ring sets covering the interesting states, in format 1 and 2
    (whose BORROW/STEAL carry their container: Writer.origin)."""
    images = []
    rnd = random.Random(1)
    for cap, nthreads, n, seq, version in [
            (4, 1, 3, 0, 1), (8, 2, 40, 0, 1), (16, 3, 100, (1 << 32) - 20, 1),
            (64, 2, 300, 5, 1), (32, 4, 31, 1 << 40, 1), (8, 1, 0, 0, 1),
            (4, 1, 3, 0, 2), (8, 2, 40, 0, 2), (16, 3, 100, (1 << 32) - 20, 2),
            (64, 2, 300, 5, 2)]:
        w = Writer(capacity=cap, max_threads=nthreads + 1, seq=seq, version=version)
        for i in range(nthreads):
            w.register(i)
        for _ in range(n):
            i = rnd.randrange(nthreads)
            x = rnd.random()
            obj = 0x10000 + 16 * rnd.randrange(8)
            if x < 0.1 and w.threads[i]["head"]:
                w.aux(i, obj, value=rnd.randrange(9))
            elif x < 0.13 and cap >= 8:
                w.mark(i, "test:start t.py::test_%d" % rnd.randrange(99),
                       cut=rnd.choice([None, 5]))
            elif x < 0.2:
                w.origin(i, obj, rnd.choice([BORROW, STEAL]),
                         rnd.choice([0, 1, 3, 255, 256, 1 << 18, -5]),
                         rnd.choice([0, 0x20000, 0x20008, 0x20003, 1 << 50]),
                         rnd.choice([-1, 0, 2, 254, 255, 1 << 18, -7]),
                         flags=rnd.choice([0, 0, IMMORTAL]))
            elif x < 0.25:
                w.record(i, obj, op=DEALLOC, refcnt=1)
            elif x < 0.3:
                w.record(i, obj, op=INCREF | IMMORTAL)
            else:
                w.record(i, obj, op=rnd.choice([INCREF, DECREF, 4, 5, 7, 30]),
                         refcnt=rnd.randrange(1, 5))
        if nthreads > 1:
            w.threads[1]["busy"] = 1
            w.flush()
        images.append(w)
    return images


def clone(w):
    mem = Mem()
    for base, buf in w.mem.regions.items():
        mem.regions[base] = bytearray(buf)
    return mem


# ---------------------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------------------
def interesting(rnd, size, mem):
    bits = size * 8
    choices = [0, 1, 2, 7, 8, 32, 63, 64, 255, 256, (1 << bits) - 1, 1 << (bits - 1),
               (1 << (bits - 1)) - 1, rnd.getrandbits(bits), 1 << rnd.randrange(bits)]
    if size == 8 and mem.regions:
        base = rnd.choice(list(mem.regions))
        choices += [base, base + rnd.randrange(0, 8192, 8), base - 4096]
    return rnd.choice(choices) & ((1 << bits) - 1)


def mutate(rnd, mem, w, log):
    regions = list(mem.regions)
    kind = rnd.randrange(10)
    if not regions:
        return
    if kind == 0:                                           # bit flip
        base = rnd.choice(regions)
        buf = mem.regions[base]
        if buf:
            k = rnd.randrange(len(buf))
            buf[k] ^= 1 << rnd.randrange(8)
            log.append("flip %#x" % (base + k))
    elif kind == 1:                                         # byte set
        base = rnd.choice(regions)
        buf = mem.regions[base]
        if buf:
            k = rnd.randrange(len(buf))
            buf[k] = rnd.choice([0, 0xFF, rnd.randrange(256)])
            log.append("byte %#x=%#x" % (base + k, buf[k]))
    elif kind in (2, 3):                                    # header field
        off, size = rnd.choice(HEADER_FIELDS)
        v = interesting(rnd, size, mem)
        hdr = mem.regions.get(w.addr)
        if hdr is not None and off + size <= len(hdr):
            hdr[off:off + size] = v.to_bytes(size, "little")
            log.append("header+%d=%#x" % (off, v))
    elif kind == 4:                                         # consistent table geometry
        hdr = mem.regions.get(w.addr)
        if hdr is not None and len(hdr) >= 256:
            nt = rnd.choice([1, 2, 8, 64, 4096])
            struct.pack_into("<I", hdr, 56, nt)
            struct.pack_into("<I", hdr, 12, 256 + 64 * nt)
            log.append("max_threads=%d" % nt)
    elif kind in (5, 6):                                    # descriptor field
        hdr = mem.regions.get(w.addr)
        i = rnd.randrange(w.max_threads + 1)
        off, size = rnd.choice(DESC_FIELDS)
        at = 256 + 64 * i + off
        if hdr is not None and at + size <= len(hdr):
            v = interesting(rnd, size, mem)
            hdr[at:at + size] = v.to_bytes(size, "little")
            log.append("desc%d+%d=%#x" % (i, off, v))
    elif kind == 7:                                         # cut a region short
        base = rnd.choice(regions)
        n = rnd.randrange(len(mem.regions[base]) + 1)
        del mem.regions[base][n:]
        log.append("cut %#x at %d" % (base, n))
    elif kind == 8:                                         # unmap a region
        base = rnd.choice(regions)
        if base != w.addr or rnd.random() < 0.1:
            del mem.regions[base]
            log.append("unmap %#x" % base)
    else:                                                   # a record's commit word
        rings = [b for b in regions if b != w.addr]
        if rings:
            base = rnd.choice(rings)
            buf = mem.regions[base]
            if len(buf) >= 32:
                k = rnd.randrange(len(buf) // 32) * 32 + 24
                op = rnd.choice([0, AUX, DEALLOC, rnd.randrange(256)])
                struct.pack_into("<IBbH", buf, k, rnd.getrandbits(32), op,
                                 rnd.randrange(-128, 128), rnd.getrandbits(16))
                log.append("commit %#x op %#x" % (base + k, op))


# ---------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------
def check_ring(ring):
    assert ring.written == ring.decoded + ring.overwritten + ring.torn + ring.unreadable + ring.rejected, \
        ring.counters
    recs = ring.records
    # attached AUX slots; a format-2 origin's container is made by the reader (its pos)
    attached = sum(1 for r in recs for a in r.aux if a.pos != r.pos)
    assert len(recs) + attached + ring.folded == ring.decoded, \
        (len(recs), attached, ring.folded, ring.decoded)
    for r in recs:
        if r.op in (BORROW, STEAL):
            assert r.delta == 0 and r.after == r.refcnt      # format 1's shape
    if ring.decoded == 0:
        assert ring.errors, "nothing decoded and no error says why"
    # each thread's records in its ring's order; threads merged by Ring.merge_key
    for t in {r.thread for r in recs}:
        pos = [r.pos for r in recs if r.thread == t]
        assert pos == sorted(pos), t
    keys = list(map(ring.merge_key, recs))
    assert keys == sorted(keys)
    objs = {r.obj for r in recs[:50]} | {0, 0x10000}
    index = build_index(ring)
    for obj in objs:
        fast = ring.records_for(obj)
        assert fast == [r for r in recs if r.obj == obj], hex(obj)
        assert fast == index.get(obj, [])
        lifetimes(fast)
    for r in recs[:20]:
        r.op_name, r.after, r.shared, r.immortal
    marks = ring.marks()
    assert [m[0] for m in marks] == sorted(m[0] for m in marks)
    assert len(marks) == sum(1 for r in recs if r.op == ringformat.MARK)
    for seq, thread, label, whole in marks:
        assert isinstance(label, str) and len(label.encode("utf-8", "surrogatepass")) <= \
            3 * ringformat.MARK_MAX


def run_case(images, seed, case):
    rnd = random.Random(seed * 1000003 + case)
    w = rnd.choice(images)
    mem = clone(w)
    log = []
    for _ in range(rnd.randrange(1, 9)):
        mutate(rnd, mem, w, log)
    t0 = time.perf_counter()
    hdr = mem.regions.get(w.addr, b"")
    try:
        ringformat.parse_header(bytes(hdr[:256]), w.addr)
    except RingError:
        pass
    try:
        ring = decode_ring(mem, w)
    except RingError:
        ring = None
    if ring is not None:
        check_ring(ring)
    regions = mem.ranges() + [(w.addr - 8192, w.addr + 8192), (0, 4096 * 4)]
    rejects = []
    for at in scan_for_headers(mem.read, regions, rejects):
        ringformat.parse_header(mem.read(at, 256), at)
    dt = time.perf_counter() - t0
    assert dt < CASE_LIMIT_S, "case took %.2f s" % dt
    return log


def decode_ring(mem, w):
    return decode.decode_ring(mem.read, w.addr)


def run(cases, seed=DEFAULT_SEED, first=0, verbose=False):
    """Runs cases [first, first+cases); returns a failure description or None."""
    images = seed_images()
    for case in range(first, first + cases):
        try:
            log = run_case(images, seed, case)
            if verbose:
                print("case %d: %s" % (case, "; ".join(log)))
        except Exception:
            return _describe(seed, case)
    return None


def _describe(seed, case):
    """The failure report of one case: its mutations and its traceback on replay."""
    images = seed_images()
    rnd = random.Random(seed * 1000003 + case)
    w = rnd.choice(images)
    mem = clone(w)
    log = []
    for _ in range(rnd.randrange(1, 9)):
        mutate(rnd, mem, w, log)
    try:
        run_case(images, seed, case)
        tb = "(passed on replay)"
    except Exception:
        tb = traceback.format_exc()
    return ("fuzz failure: seed %#x case %d (replay: python3 tests/unit/fuzz_decode.py --seed %#x "
            "--case %d)\nmutations: %s\n%s" % (seed, case, seed, case, "; ".join(log), tb))


def test_fuzz_decode():
    cases = int(os.environ.get("PYREF_FUZZ_CASES", "10000"))
    seed = int(os.environ.get("PYREF_FUZZ_SEED", str(DEFAULT_SEED)), 0)
    failure = run(cases, seed)
    assert failure is None, failure


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="?", type=int, default=10000)
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=DEFAULT_SEED)
    ap.add_argument("--case", type=int, help="replay this one case, verbosely")
    args = ap.parse_args(argv)
    t0 = time.time()
    if args.case is not None:
        failure = run(1, args.seed, args.case, verbose=True)
    else:
        failure = None
        done = 0
        while done < args.cases and failure is None:
            n = min(10000, args.cases - done)
            failure = run(n, args.seed, done)
            done += n
            print("%d cases, %.0f s" % (done, time.time() - t0), flush=True)
    if failure:
        print(failure)
        return 1
    print("ok: seed %#x" % args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
