"""Kill tests: writers on 1, 2 and 8 threads are killed at random points and what the dead
process leaves is decoded by gdbext/pyref/reader/decode.py and checked record by record.

The writer is tests/c/progs/killer.c, linked with build/libpyref.a: every field of every
record is a function of (thread, position), and each thread publishes the number of the
write it is doing in `killer_cur[]`, so the test knows exactly what each ring must hold.

How a process is killed, and what is decoded:
  SIGSEGV, SIGABRT  sent with tgkill() to a random thread of the process; the kernel dumps
                    a core (core_pattern "core", RLIMIT_CORE raised for the child) and the
                    core is read with corefile.Core, the ring found by its symbol.
  SIGKILL           leaves no core. The process is stopped with SIGSTOP instead, its memory
                    read through /proc/PID/mem (what a SIGKILL would have left at that
                    instant, since a stopped process runs no more code), then SIGKILLed.

Checks per image (an "image" is one killed process; every thread that had started writing
counts as one kill point, interrupted wherever the signal or the scheduler caught it):
  - no wrong record: every decoded record (AUX records included) is exactly the record
    its thread wrote at that position (obj, site, refcnt, op and flags, delta, tid), a
    format-2 origin as the reader shows it (its count, its container and index as an AUX
    CONTAINER, an AUX ORIGIN folded in);
  - exact accounting per thread: head is the write under way or one past it (two for the
    origin + AUX ORIGIN write); the decoded positions are the whole window, except that a
    thread caught inside a write (busy) may have the slots of that write torn (an origin
    cut short from its AUX ORIGIN counts as torn), the in-flight record decoded as the
    newest, or the write's AUX ORIGIN decoded alone where it landed;
    written = decoded + overwritten + torn, torn <= 2 x in_flight, lost = 0;
  - AUX records carry the seq of the record before them; with one thread or the "gil"
    mutex, seqs increase along each ring and are unique.

`make check` runs 1,200 kill points (test_kill_quick) and 20 forks while 2 threads write
(test_fork_while_threads_write). `make killtest` (this file as a program) runs until
10,000 kill points over every thread count, mutex setting and signal, then 600 forks, and
prints the figures docs/reliability.md quotes.
"""
import collections
import ctypes
import os
import random
import signal
import struct
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # `make killtest`
import pyreftest  # noqa: E402
from pyref.reader import corefile  # noqa: E402
from pyref.reader.decode import decode_ring  # noqa: E402
from pyref.reader.ringformat import (AUX, AUX_ORIGIN, BORROW, DEALLOC,  # noqa: E402
                                     DECREF, IMMORTAL, INCREF, STEAL)

SRC = os.path.join(pyreftest.ROOT, "tests", "c", "progs", "killer.c")
CAP = 256                                    # PYREF_RING_RECORDS for the writer: small,
                                             # so rings wrap within a millisecond
M64 = (1 << 64) - 1
NONE = M64                                   # killer_cur before a thread's first write
MAX_THREADS = 64
SIGNALS = ("SIGKILL", "SIGSEGV", "SIGABRT")
SYS_TGKILL = 234                             # x86-64

_libc = ctypes.CDLL(None, use_errno=True)


# ---------------------------------------------------------------------------------------
# The writer and its formula (killer.c)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def killer(tmp_path_factory):
    return build_killer(str(tmp_path_factory.mktemp("killer")))


def build_killer(outdir):
    subprocess.run(["make", "-s", "-C", pyreftest.ROOT, "build/libpyref.a"], check=True,
                   capture_output=True)
    exe = os.path.join(outdir, "killer")
    subprocess.run(["gcc", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-std=gnu11",
                    "-I" + os.path.join(pyreftest.ROOT, "c_helpers", "include"), "-pthread",
                    SRC, os.path.join(pyreftest.BUILD, "libpyref.a"), "-o", exe],
                   check=True, capture_output=True, text=True)
    return exe


def _mix(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return z ^ (z >> 31)


def _signed(v):
    return v - (1 << 64) if v >> 63 else v


PERIOD = 8        # killer.c's writes repeat every 8 positions; 6 and 7 are one write


def killer_origin(t, i):
    """(op, container, count, index) of the origin thread t writes at position i (i % 8 ==
    5 or 6), as killer.c's killer_origin()."""
    odd = (i // 8) % 2
    container = ((t + 1) << 40 | i << 3) & 0x0000FFFFFFFFFFF8
    if i % 8 == 6:
        return STEAL, container, (1 << 20) + i % 4096, i % 1000 - 1
    return ((BORROW if odd else STEAL), container, 1 + i % 255 if odd else 256 + i % 100000,
            i % 100000 - 1 if odd else i % 254 - 1)


def killer_expect(t, i, sites):
    """(obj, site, refcnt, op | flags, delta) of thread t's write number i, as a reader
    shows it (a format-2 origin with its count in refcnt, delta 0)."""
    obj = (t + 1) << 44 | i << 4
    site = sites + 32 * ((i * 3 + t) % 8)
    k = i % PERIOD
    if k in (5, 6):
        op, container, count, index = killer_origin(t, i)
        return (obj, site, count, op, 0)
    if k == 7:                             # the AUX ORIGIN of 6, seen alone when orphaned
        op, container, count, index = killer_origin(t, i - 1)
        return (index & M64, AUX_ORIGIN, count, AUX, 0)
    if k == 4:
        return (obj, 1 + i % 7, _signed(_mix(obj) ^ 0xA5), AUX, 0)
    if k == 3:
        return (obj, site, 1, DEALLOC, -1)
    return (obj, site, _signed(_mix(obj)), (INCREF, DECREF, INCREF | IMMORTAL)[k],
            (1, -1, 0)[k])


def _thread_of(obj):
    """(t, i) a record's obj names, or None if it names no write."""
    t = (obj >> 44) - 1
    if t < 0 or t >= MAX_THREADS or obj & 0xF:
        return None
    return t, (obj >> 4) & ((1 << 40) - 1)


# ---------------------------------------------------------------------------------------
# Checking one image
# ---------------------------------------------------------------------------------------
class Bad(AssertionError):
    pass


def _fields(r):
    return (r.obj, r.site, r.refcnt, r.op | r.flags, r.delta)


def verify(read, addrs, serialised, fork_child=None):
    """Checks the image `read` gives. `addrs` are the killer's printed addresses;
    `serialised`: seqs must be exact (one thread, or the gil mutex). `fork_child`:
    (child pid, parent pid, main thread index) when the image is a fork child's.
    Returns (kill points, {interruption kind: count}, ring); raises Bad on any failure."""
    ring_addr = struct.unpack("<Q", read(addrs["ring"], 8))[0]
    ring = decode_ring(read, ring_addr)
    cur = struct.unpack("<%dQ" % MAX_THREADS, read(addrs["cur"], 8 * MAX_THREADS))
    tids = struct.unpack("<%dQ" % MAX_THREADS, read(addrs["tids"], 8 * MAX_THREADS))
    sites = addrs["sites"]
    hdr = ring.header
    cap = hdr.capacity
    if ring.errors and not (ring.written == 0 and len(ring.errors) == 1):
        raise Bad("decoder errors: %s" % ring.errors)
    if ring.rejected or ring.rejected_descriptors:    # real writers are never implausible
        raise Bad("real records rejected as implausible: %r %s" % (
            ring.rejections, ring.rejected_descriptors))
    if ring.written != ring.decoded + ring.overwritten + ring.torn + ring.unreadable:
        raise Bad("counters do not add up: %r" % ring)
    if ring.unreadable or ring.lost:
        raise Bad("unreadable %d lost %d" % (ring.unreadable, ring.lost))
    if ring.torn > 2 * ring.in_flight:         # a two-slot write tears two at most
        raise Bad("%d torn records but only %d writes in flight" % (ring.torn, ring.in_flight))

    by_desc = collections.defaultdict(list)
    for r in ring.records:
        for x in (r,) + r.aux:
            if x is not r and x.pos == r.pos:       # an origin's container (the reader's)
                continue
            by_desc[x.thread].append(x)
        if r.op in (BORROW, STEAL):
            who = _thread_of(r.obj)
            want = killer_origin(*who) if who else None
            got = tuple((a.obj, a.site, a.refcnt) for a in r.aux)
            if want is None or got != ((want[1], 1, want[3]),):
                raise Bad("origin at thread %d pos %d: container %s, want %s" % (
                    r.thread, r.pos, got, want and (want[1], 1, want[3])))
    desc_of = {}
    for d in ring.threads:
        if d.ring or d.head:
            t = next((t for t in range(MAX_THREADS) if tids[t] == d.os_tid), None)
            if fork_child and d.state == 1:
                t = fork_child[2]                 # the forking thread: tid is the child's
            if t is None:
                raise Bad("descriptor %d (os_tid %d) belongs to no writer" % (d.index, d.os_tid))
            desc_of[t] = d
    points, kinds = 0, collections.Counter()
    torn_total = 0
    all_seqs = []
    for t, d in sorted(desc_of.items()):
        c = None if cur[t] == NONE else cur[t]
        head, busy = d.head, d.busy
        recs = sorted(by_desc.get(d.index, []), key=lambda x: x.pos)
        fork_rec = None
        if fork_child and t == fork_child[2]:
            fork_rec = recs.pop() if recs and recs[-1].op_name == "FORK" else None
            want = (fork_child[1], 0, fork_child[0], 9, 0, d.serial)
            if fork_rec is None or (fork_rec.obj, fork_rec.site, fork_rec.refcnt,
                                    fork_rec.op, fork_rec.delta, fork_rec.tid) != want \
                    or fork_rec.pos != head - 1 or busy or \
                    head != c + (3 if c % PERIOD == 6 else 2):    # c's slots, then FORK
                raise Bad("fork child: no FORK record at the forking thread's head: head %d "
                          "cur %s busy %d last %s" % (head, c, busy, fork_rec))
            head -= 1                             # the parent's records as written
        if c is None:
            if head:
                raise Bad("thread %d: head %d before its first write" % (t, head))
            continue
        points += 1
        width = 2 if c % PERIOD == 6 else 1         # the origin + AUX ORIGIN write
        if head not in (c, c + width):
            raise Bad("thread %d: head %d, write under way %d" % (t, head, c))
        inside = busy and head == c
        # an origin that did not fit: its AUX ORIGIN is folded into it (not a Record of its
        # own): stand in for it at its position, with the fields killer.c wrote there
        for x in [x for x in recs if x.pos % PERIOD == 6 and x.op == STEAL]:
            e = killer_expect(t, x.pos + 1, sites)
            recs.append(x._replace(obj=e[0], site=e[1], refcnt=e[2], op=AUX, flags=0,
                                   delta=0, pos=x.pos + 1, aux=()))
        # the write under way's AUX ORIGIN, committed in a slot the window reads as its
        # oldest position while its origin is not (yet) counted: decoded there unattached,
        # its own fields (docs/ring-format.md, "Two records in one write")
        orphans = 0
        if inside and width == 2:
            new_aux = killer_expect(t, c + 1, sites)
            keep = [x for x in recs if not (x.pos == c + 1 - cap and _fields(x) == new_aux)]
            orphans, recs = len(recs) - len(keep), keep
        recs.sort(key=lambda x: x.pos)
        if not serialised and busy and head in (c, c + 1) and head >= cap and recs and \
                recs[-1].pos == head and _fields(recs[-1]) == killer_expect(t, head - cap, sites):
            # decode.py's in-flight test misfired: the thread's seqs went back (threads
            # racing on the seq counter), so its oldest record looks newer than its newest
            # and is shown at position head (test_crash_prefix.py,
            # test_seq_going_back_in_window), before its write cleared the slot or after
            # its head store (busy still 1). Fields intact, position off by one capacity.
            kinds["misplaced: seq went back"] += 1
            recs[-1] = recs[-1]._replace(pos=head - cap)
            recs.sort(key=lambda x: x.pos)
        for x in recs:
            if x.tid != d.serial:
                raise Bad("thread %d pos %d: tid %d, serial %d" % (t, x.pos, x.tid, d.serial))
            if _fields(x) != killer_expect(t, x.pos, sites):
                who = _thread_of(x.obj)
                if who and _fields(x) == killer_expect(who[0], who[1], sites):
                    raise Bad("thread %d: write %s decoded at position %d (misplaced; head %d, "
                              "write under way %s, busy %d)" % (t, who, x.pos, head, c, busy))
                raise Bad("thread %d pos %d: WRONG record %s, want %s" % (
                    t, x.pos, _fields(x), killer_expect(t, x.pos, sites)))
        got = [x.pos for x in recs]
        n = min(head, cap)
        old = list(range(head - n, head))
        if fork_rec is not None and head >= cap:
            old = old[1:]                         # the FORK record took the oldest slot
        # The window whole, or (a write under way) less the positions whose slots the
        # write took (torn, or cut short: an origin without its AUX ORIGIN), plus the
        # in-flight record decoded as newest at head, or its AUX ORIGIN as an orphan.
        missing, extra = set(old) - set(got), set(got) - set(old)
        mine = {c % cap, (c + width - 1) % cap} if inside else set()
        torn_here = len(missing) - len(extra) - orphans
        if not all(p % cap in mine for p in missing) or not extra <= ({c} if inside else
                                                                        set()) \
                or torn_here < 0 or len(got) != len(set(got)):
            raise Bad("thread %d: head %d cur %d busy %d: decoded positions %s..%s (%d), "
                      "missing %s, extra %s" % (t, head, c, busy, got[:1], got[-1:],
                                                len(got), sorted(missing)[:5],
                                                sorted(extra)[:5]))
        torn_total += torn_here
        if orphans:
            kinds["orphan AUX ORIGIN of the write under way"] += 1
        kinds[_interruption(read, d, hdr, c, busy, head, t, sites)] += 1
        # seqs: an AUX carries its record's; serialised writers number exactly
        by_pos = {x.pos: x for x in recs}
        prev = None
        for x in recs:
            if x.op == AUX:
                p = by_pos.get(x.pos - 1)
                if p is not None and p.seq32 != x.seq32:
                    raise Bad("thread %d pos %d: AUX seq %d, its record's %d"
                              % (t, x.pos, x.seq32, p.seq32))
                continue
            if serialised and prev is not None and x.seq <= prev:
                raise Bad("thread %d pos %d: seq %d after %d" % (t, x.pos, x.seq, prev))
            prev = x.seq
            all_seqs.append(x.seq)
    if torn_total != ring.torn:
        raise Bad("decoder counted %d torn, the writers account for %d" % (ring.torn,
                                                                           torn_total))
    if serialised and len(set(all_seqs)) != len(all_seqs):
        raise Bad("duplicate seqs among serialised writers")
    if ring.in_flight != sum(d.busy == 1 for d in ring.threads):
        raise Bad("in_flight %d" % ring.in_flight)
    if fork_child:
        if (hdr.pid, hdr.forks) != (fork_child[0], 1):
            raise Bad("fork child header: pid %d forks %d" % (hdr.pid, hdr.forks))
        for t, d in desc_of.items():
            if d.state != (1 if t == fork_child[2] else 2):
                raise Bad("fork child: thread %d state %s" % (t, d.state_name))
    return points, kinds, ring


def _interruption(read, d, hdr, c, busy, head, t, sites):
    """Where in the write protocol thread t was caught (for the figures), from the raw
    slot of its write under way."""
    if not busy:
        return "idle"
    if head == c + 1:
        return "head stored, busy"
    try:
        slot = read(d.ring + (c % hdr.capacity) * 32, 32)
    except MemoryError:     # seen once under load: the ring's mapping left out of the core
        return "slot not in the core"
    obj, commit = struct.unpack_from("<Q", slot, 0)[0], struct.unpack_from("<Q", slot, 24)[0]
    if commit == 0:
        return "commit = 0 (torn)"
    if obj == killer_expect(t, c, sites)[0]:     # commit != 0: whole, the fields are c's
        return "committed, head not stored"
    return "busy, slot not yet cleared"


# ---------------------------------------------------------------------------------------
# Killing
# ---------------------------------------------------------------------------------------
def _core_limit():
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _start(killer, nthreads, gil, cwd, extra=(), capacity=CAP):
    env = dict(os.environ, PYREF_RING_RECORDS=str(capacity))
    env.pop("PYREF", None)
    env.pop("PYREF_RING_THREADS", None)
    p = subprocess.Popen([killer, str(nthreads)] + (["gil"] if gil else []) + list(extra),
                         cwd=cwd, env=env, stdout=subprocess.PIPE, text=True,
                         preexec_fn=_core_limit)
    line = p.stdout.readline().split()
    assert line and line[0] == "addr", line
    return p, {k: int(v, 16) for k, v in (w.split("=") for w in line[1:])}


def _find_core(cwd):
    for _ in range(200):
        names = [n for n in os.listdir(cwd) if n == "core" or n.startswith("core.")]
        if names:
            return os.path.join(cwd, names[0])
        time.sleep(0.01)
    return None


def kill_once(killer, nthreads, gil, how, rnd, cwd):
    """Starts the writer, kills it after a random delay, checks what it left.
    Returns (kill points, interruption kinds)."""
    p, addrs = _start(killer, nthreads, gil, cwd)
    try:
        # mostly well into the run (rings wrapped many times), sometimes while the threads
        # are still starting and registering
        time.sleep(rnd.uniform(0, 0.001) if rnd.random() < 0.15 else rnd.uniform(0.001, 0.02))
        serialised = gil or nthreads == 1
        if how == "SIGKILL":
            os.kill(p.pid, signal.SIGSTOP)
            _, status = os.waitpid(p.pid, os.WUNTRACED)
            assert os.WIFSTOPPED(status), status
            fd = os.open("/proc/%d/mem" % p.pid, os.O_RDONLY)
            try:
                def read(addr, size):
                    return os.pread(fd, size, addr)
                points, kinds, _ = verify(read, addrs, serialised)
            finally:
                os.close(fd)
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            assert p.returncode == -signal.SIGKILL
            return points, kinds
        sig = getattr(signal, how)
        tasks = os.listdir("/proc/%d/task" % p.pid)
        tid = int(rnd.choice(tasks))
        if _libc.syscall(SYS_TGKILL, p.pid, tid, int(sig)) != 0:
            raise OSError(ctypes.get_errno(), "tgkill")
        p.wait(timeout=30)
        assert p.returncode == -sig, p.returncode
        path = _find_core(cwd)
        assert path, "no core in %s (core_pattern %r)" % (
            cwd, open("/proc/sys/kernel/core_pattern").read().strip())
        core = corefile.Core(path)
        try:
            assert core.symbol("pyref_ring") == addrs["ring"]
            return verify(core.read, addrs, serialised)[:2]
        finally:
            core.close()
            os.unlink(path)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()


CONFIGS = [(n, gil) for n in (1, 2, 8) for gil in (False, True) if not (n == 1 and gil)]


def campaign(killer, cwd, target_points, seed, log=None):
    """Kills writers over every thread count, mutex setting and signal, round robin, until
    `target_points` kill points. Returns the figures; raises Bad on the first failure."""
    rnd = random.Random(seed)
    figs = dict(points=0, images=0, kinds=collections.Counter(),
                per=collections.Counter(), seconds=0.0)
    t0 = time.monotonic()
    k = 0
    while figs["points"] < target_points:
        n, gil = CONFIGS[k % len(CONFIGS)]
        how = SIGNALS[(k // len(CONFIGS)) % len(SIGNALS)]
        k += 1
        try:
            points, kinds = kill_once(killer, n, gil, how, rnd, cwd)
        except Bad as e:
            raise Bad("%s, %d threads%s, image %d (seed %#x): %s" % (
                how, n, " gil" if gil else "", k, seed, e)) from None
        figs["points"] += points
        figs["images"] += 1
        figs["kinds"].update(kinds)
        figs["per"][(n, gil, how)] += points
        if log and figs["images"] % 200 == 0:
            log("%d images, %d kill points, %.0f s" % (figs["images"], figs["points"],
                                                        time.monotonic() - t0))
    figs["seconds"] = time.monotonic() - t0
    return figs


def report(figs):
    lines = ["%d kill points in %d images, %.0f s: 0 wrong records, accounting exact "
             "(any failure stops the run)" % (figs["points"], figs["images"],
                                              figs["seconds"])]
    for (n, gil, how), pts in sorted(figs["per"].items()):
        lines.append("  %d thread%s%s %-8s %6d points" % (n, "s" if n > 1 else "",
                                                        " gil" if gil else "    ", how, pts))
    lines.append("  where the threads were caught:")
    for kind, cnt in figs["kinds"].most_common():
        lines.append("    %-28s %6d" % (kind, cnt))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------
needs_cores = pytest.mark.skipif(not pyreftest.kernel_cores_here(),
                                 reason="core_pattern does not write cores into the cwd")


@needs_cores
@pytest.mark.parametrize("how", SIGNALS)
def test_kill_quick(killer, tmp_path, how):
    """`make check`'s share: ~400 kill points per signal over 1, 2 and 8 threads."""
    target = int(os.environ.get("PYREF_KILL_QUICK_POINTS", "400"))
    figs = collections.Counter()
    rnd_seed = 0x5EED + SIGNALS.index(how)
    rnd = random.Random(rnd_seed)
    k = 0
    while figs["points"] < target:
        n, gil = CONFIGS[k % len(CONFIGS)]
        k += 1
        try:
            points, kinds = kill_once(killer, n, gil, how, rnd, str(tmp_path))
        except Bad as e:
            pytest.fail("%s, %d threads%s, image %d (seed %#x): %s" % (
                how, n, " gil" if gil else "", k, rnd_seed, e))
        figs["points"] += points
        figs.update(kinds)
    print("%s: %s" % (how, dict(figs)))
    # the kills reached the inside of writes, not only the gaps between them
    assert figs["commit = 0 (torn)"] > 0 and figs["busy, slot not yet cleared"] > 0, figs


def test_verifier_catches_a_wrong_record(killer, tmp_path):
    """The checker is not blind: the same image with one field of one record changed, or
    one record moved to another position, fails."""
    p, addrs = _start(killer, 2, False, str(tmp_path))
    try:
        time.sleep(0.01)
        os.kill(p.pid, signal.SIGSTOP)
        os.waitpid(p.pid, os.WUNTRACED)
        with open("/proc/%d/mem" % p.pid, "rb", buffering=0) as f:
            def read(addr, size):
                f.seek(addr)
                return f.read(size)
            verify(read, addrs, False)                    # the real image passes
            ring_addr = struct.unpack("<Q", read(addrs["ring"], 8))[0]
            ring = decode_ring(read, ring_addr)
            d = next(d for d in ring.threads if d.head > CAP)
            pos = (d.head - 3) // PERIOD * PERIOD           # an INCREF: any refcnt is valid
            slot = d.ring + (pos % CAP) * 32
            mine = bytearray(read(slot, 32))
            struct.pack_into("<Q", mine, 16, struct.unpack_from("<Q", mine, 16)[0] ^ 4)
            with pytest.raises(Bad, match="WRONG"):       # a refcnt no write stored
                verify(_with_slot(read, slot, mine), addrs, False)
            other = read(d.ring + ((pos - PERIOD) % CAP) * 32, 32)
            with pytest.raises(Bad, match="misplaced"):   # a real record, wrong place
                verify(_with_slot(read, slot, other), addrs, False)
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def _with_slot(read, slot, data):
    """`read` with the 32 bytes at `slot` replaced by `data`."""
    def r2(addr, size):
        b = bytearray(read(addr, size))
        lo, hi = max(addr, slot), min(addr + size, slot + 32)
        if lo < hi:
            b[lo - addr:hi - addr] = data[lo - slot:hi - slot]
        return bytes(b)
    return r2


def fork_campaign(killer, cwd, nthreads, gil, forks, timeout_s=600):
    """Runs the killer in fork mode until `forks` children have dumped core, and checks
    each child's core. Returns (copied threads checked, interruption kinds); raises Bad."""
    p, addrs = _start(killer, nthreads, gil, cwd, extra=["fork"])
    points, kinds = 0, collections.Counter()
    try:
        deadline = time.monotonic() + timeout_s
        for _ in range(forks):
            assert time.monotonic() < deadline, "forks too slow"
            line = p.stdout.readline().split()
            assert line and line[0] == "fork", line
            k, child, status = int(line[1]), int(line[2]), int(line[3])
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGABRT, status
            d = os.path.join(cwd, "fork-%d" % k)
            path = _find_core(d)
            assert path, "no core in %s" % d
            core = corefile.Core(path)
            try:
                n, kk, _ = verify(core.read, addrs, gil,
                                  fork_child=(child, p.pid, nthreads))
            except Bad as e:
                raise Bad("fork %d (%d threads%s): %s" % (k, nthreads, " gil" if gil else "",
                                                          e)) from None
            finally:
                core.close()
                os.unlink(path)
                os.rmdir(d)
            points += n
            kinds.update(kk)
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    return points, kinds


@needs_cores
def test_fork_while_threads_write(killer, tmp_path):
    """Forks while 2 threads write (no GIL): each child's core holds the parent's history
    with 0 wrong records, the forking thread's FORK record last, the other threads exited."""
    try:
        fork_campaign(killer, str(tmp_path), 2, False,
                      int(os.environ.get("PYREF_KILL_FORKS", "20")), timeout_s=60)
    except Bad as e:
        pytest.fail(str(e))


if __name__ == "__main__":
    import argparse
    import tempfile
    ap = argparse.ArgumentParser(description="make killtest: the long kill campaign")
    ap.add_argument("points", nargs="?", type=int,
                    default=int(os.environ.get("PYREF_KILL_POINTS", "10000")))
    ap.add_argument("--seed", type=lambda s: int(s, 0), default=0xC0FFEE)
    ap.add_argument("--forks", type=int, default=150, help="forks per fork configuration")
    args = ap.parse_args()
    if not pyreftest.kernel_cores_here():
        raise SystemExit("core_pattern does not write cores into the cwd")
    with tempfile.TemporaryDirectory() as d:
        exe = build_killer(d)
        work = os.path.join(d, "run")
        os.mkdir(work)
        figs = campaign(exe, work, args.points, args.seed,
                        log=lambda s: print(s, flush=True))
        print(report(figs), flush=True)
        # forks while threads write: every child's copy checked the same way
        total, kinds, t0 = 0, collections.Counter(), time.monotonic()
        for n, gil in ((1, False), (1, True), (8, False), (8, True)):
            pts, kk = fork_campaign(exe, tempfile.mkdtemp(dir=work), n, gil, args.forks)
            total += pts
            kinds.update(kk)
        print("%d forks with 1 and 8 writer threads, with and without the mutex, %.0f s: "
              "%d copied threads checked, 0 wrong records, accounting exact"
              % (4 * args.forks, time.monotonic() - t0, total))
        for kind, cnt in kinds.most_common():
            print("    %-28s %6d" % (kind, cnt))
