"""fork() and signal handlers with a real traced extension in a real interpreter, read back
from kernel core dumps by the gdb-free reader (docs/reliability.md, "fork" and "Signals").

fork: a process with a recording main thread and a live recording worker thread forks; the
child records and crashes, then the parent records and crashes. The child's core holds the
parent's history up to the fork unchanged, one FORK record (obj = parent pid, refcnt =
child pid) with the next seq, then the child's records; the worker's descriptor is exited
with its history kept. The parent's core has no FORK record and the same history.

signals: a C SIGALRM handler every 20 us does INCREF/DECREF on its own object while the
main thread does INCREF/DECREF pairs in a loop; the handler often lands inside the main
thread's record, where the re-entry guard drops the handler's record. The core decodes
with 0 torn and 0 wrong records, the reader's `lost` equals the records the handler saw
dropped, every handler record in the window carries its object's true count, and seqs
along the ring are consecutive (no handler ran between a record's seq load and store).
"""
import os

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "forksig_ext.c")
DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "forksig_driver.py")
LINES = pyreftest.marker_lines(SRC)
BY_LINE = {v: k for k, v in LINES.items()}
PYTHON = "/usr/bin/python3.11"
# PYCTX records (PYREF_PYCONTEXT=1) would add AUX records to the handler's transitions;
# the counts below are of the transitions alone.
ENV = {"PYREF_PYCONTEXT": "0"}

pytestmark = pytest.mark.skipif(not pyreftest.kernel_cores_here(),
                                reason="needs kernel core dumps in the cwd (the fork child "
                                       "dumps its own core)")


@pytest.fixture(scope="module")
def moddir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("forksig"))
    pyreftest.build_ext(SRC, PYTHON, d)
    return d


def marked(ring, site):
    """[(marker, record)] of the records made at a marked line of forksig_ext.c, plus FORK
    records as ('FORK', record), in (seq, thread, pos) order."""
    out = []
    for r in ring.records:
        if r.op_name == "FORK":
            out.append(("FORK", r))
            continue
        s = site(r)
        if s and s[0] == "forksig_ext.c" and s[1] in BY_LINE:
            out.append((BY_LINE[s[1]], r))
    return out


def thread_records(ring, thread):
    """Every decoded record of one descriptor, attached AUX records included, by position."""
    out = []
    for r in ring.records:
        if r.thread == thread:
            out.extend((r,) + r.aux)
    return sorted(out, key=lambda r: r.pos)


def churn_ok(recs, obj):
    """The churn records of obj alternate INCREF(b) / DECREF(b + 1) for one count b."""
    assert recs, "no churn records"
    assert all(r.obj == obj for _, r in recs)
    b = recs[0][1].refcnt
    want = [("churn-incref", "INCREF", b), ("churn-decref", "DECREF", b + 1)] * (len(recs) // 2)
    assert [(m, r.op_name, r.refcnt) for m, r in recs] == want


# ---------------------------------------------------------------------------------------
# fork
# ---------------------------------------------------------------------------------------
def test_fork_child_and_parent(moddir, tmp_path):
    os.mkdir(tmp_path / "child")
    core, proc = pyreftest.run_to_core(PYTHON, [DRIVER, moddir, "fork"], cwd=str(tmp_path),
                                       env=ENV)
    words = dict((ln.split()[0], ln.split()[1:]) for ln in proc.stdout.splitlines())
    obj, wobj, parent = (int(x) for x in words["objs"])
    child, status = (int(x) for x in words["child"])
    assert os.WIFSIGNALED(status) and os.WCOREDUMP(status), status
    child_core = os.path.join(str(tmp_path), "child", "core")
    assert os.path.exists(child_core)

    pring, psite = pyreftest.ring_from_core(core)
    cring, csite = pyreftest.ring_from_core(child_core)
    for ring in (pring, cring):
        assert ring.errors == [], ring.errors
        assert (ring.torn, ring.lost, ring.unreadable) == (0, 0, 0)
        assert ring.written == ring.decoded + ring.overwritten

    # the header says whose ring it is
    assert (pring.header.pid, pring.header.forks) == (parent, 0)
    assert (cring.header.pid, cring.header.forks) == (child, 1)

    pm, cm = marked(pring, psite), marked(cring, csite)
    main_p = [x for x in pm if x[1].obj == obj]
    main_c = [x for x in cm if x[1].obj == obj or x[0] == "FORK"]
    work_p = [x for x in pm if x[1].obj == wobj]
    work_c = [x for x in cm if x[1].obj == wobj]

    # parent: 100 + 5 pairs on obj, no FORK anywhere; child: 100 pairs, FORK, 10 pairs
    assert not any(m == "FORK" for m, _ in pm)
    churn_ok(main_p, obj)
    assert len(main_p) == 2 * 105
    forks = [i for i, (m, _) in enumerate(main_c) if m == "FORK"]
    assert forks == [200], forks
    fork = main_c[200][1]
    churn_ok(main_c[:200], obj)
    churn_ok(main_c[201:], obj)
    assert len(main_c) == 200 + 1 + 20
    assert (fork.obj, fork.refcnt, fork.delta, fork.site) == (parent, child, 0, 0)

    # the FORK record is the forking thread's next record and takes the next seq
    self_desc = cring.threads[fork.thread]
    assert self_desc.state_name == "live" and self_desc.os_tid == child
    before = [r for r in thread_records(cring, fork.thread) if r.pos < fork.pos]
    assert fork.pos == before[-1].pos + 1
    assert fork.seq == max(r.seq for r in cring.records if r.seq < fork.seq) + 1

    # the history before the fork is the same bytes in both
    def key(r):
        return (r.thread, r.pos, r.seq, r.obj, r.site, r.refcnt, r.op, r.delta, r.tid)
    pre_c = [key(r) for r in cring.records if r.seq < fork.seq]
    pre_p = [key(r) for r in pring.records if r.seq < fork.seq]
    assert pre_c == pre_p and len(pre_c) >= 300

    # the worker: live in the parent, exited in the child, 50 pairs in both
    churn_ok(work_p, wobj)
    churn_ok(work_c, wobj)
    assert len(work_p) == len(work_c) == 100
    wdesc_p, wdesc_c = pring.threads[work_p[0][1].thread], cring.threads[work_c[0][1].thread]
    assert wdesc_p.index == wdesc_c.index
    assert (wdesc_p.state_name, wdesc_c.state_name) == ("live", "exited")
    assert wdesc_p.head == wdesc_c.head and wdesc_c.busy == 0


# ---------------------------------------------------------------------------------------
# signals
# ---------------------------------------------------------------------------------------
def test_signal_handler_records(moddir, tmp_path):
    core, proc = pyreftest.run_to_core(PYTHON, [DRIVER, moddir, "signal"],
                                       cwd=str(tmp_path), env=ENV, timeout=120)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("handler"))
    calls, written, dropped, obj, hobj = (int(x) for x in line.split()[1:])
    assert written + dropped == 2 * calls
    assert dropped > 0 and written > 0, "the guard was not exercised both ways: %s" % line

    ring, site = pyreftest.ring_from_core(core)
    assert ring.errors == [], ring.errors
    assert ring.torn == 0 and ring.unreadable == 0
    assert ring.written == ring.decoded + ring.overwritten
    assert ring.lost == dropped, (ring.lost, dropped)

    recs = marked(ring, site)
    main = [x for x in recs if x[0].startswith("churn")]
    handler = [x for x in recs if x[0].startswith("handler")]
    assert all(r.obj == obj for _, r in main)
    assert all(r.obj == hobj for _, r in handler)
    assert handler, "no handler record in the window"
    # the main loop's records alternate exactly: a handler never broke one
    b = main[0][1].refcnt if main[0][0] == "churn-incref" else main[0][1].refcnt - 1
    for m, r in main:
        assert (r.op_name, r.refcnt) == (("INCREF", b) if m == "churn-incref"
                                         else ("DECREF", b + 1)), (m, r)
    # the handler's records carry its object's true count, whichever of a pair was dropped;
    # those written while hammer() ran (its caller's argument reference still held: one
    # more) come before the main loop's first record (after churn(obj, 1)'s pair)
    if len(main) > 2:
        handler = [x for x in handler if x[1].pos > main[2][1].pos]
    assert handler, "no handler record after hammer() returned"
    hb = handler[0][1].refcnt if handler[0][0] == "handler-incref" else \
        handler[0][1].refcnt - 1
    for m, r in handler:
        assert (r.op_name, r.refcnt) == (("INCREF", hb) if m == "handler-incref"
                                         else ("DECREF", hb + 1)), (m, r)
    # one recording thread: its window is whole and seqs along it are consecutive (an AUX
    # record carries the seq of the record before it)
    mine = thread_records(ring, main[0][1].thread)
    assert [r.pos for r in mine] == list(range(mine[0].pos, mine[0].pos + len(mine)))
    seqs = [r.seq for r in mine if r.op_name != "AUX"]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    for prev, r in zip(mine, mine[1:]):
        assert r.op_name != "AUX" or r.seq == prev.seq
