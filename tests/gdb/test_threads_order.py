"""Threads recording at the same time without the GIL (tests/ext/threads_ext.c): the ring's
shared seq counter is relaxed, so a thread's consecutive records can get decreasing seqs;
the reader keeps each thread's records in its ring's order (docs/ring-format.md, "Sequence
numbers"), so balanced INCREF/DECREF pairs give no verdict and no leak, from the core of a
free-threaded 3.13t run (parallel callers) and of release builds (the GIL dropped)."""
import json
import os
import re

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "threads_ext.c")
DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "threads_driver.py")
THREADS, PAIRS = 8, 100000


@pytest.fixture(scope="module", params=pyreftest.every_version(
    ("3.13t", "3.12", "3.14", "3.15")))
def crashed(request, tmp_path_factory):
    """(python, core, [object addresses]) of the driver's run."""
    python = request.param
    d = str(tmp_path_factory.mktemp("threads"))
    pyreftest.build_ext(SRC, python, d)
    core, p = pyreftest.run_to_core(python, [DRIVER, d, str(THREADS), str(PAIRS)], cwd=d,
                                    timeout=300)
    objs = [int(a) for a in re.search(r"^objs (.*)$", p.stdout, re.M).group(1).split()]
    return python, core, objs


def test_each_thread_keeps_its_ring_order(crashed):
    """Per object, the records alternate INCREF, DECREF from the core, and the counts run
    1 -> 2 -> 1: no pair is split, whatever the seqs did."""
    _, core, objs = crashed
    ring, _ = pyreftest.ring_from_core(core)
    went_back = 0
    for obj in objs:
        recs = [r for r in ring.records_for(obj) if r.op_name in ("INCREF", "DECREF")]
        assert len(recs) >= 2, hex(obj)
        ops = [r.op_name for r in recs]
        first = ops.index("INCREF")
        tail = ops[first:len(ops) - (len(ops) - first) % 2]
        assert tail == ["INCREF", "DECREF"] * (len(tail) // 2), hex(obj)
        went_back += sum(b.seq < a.seq for a, b in zip(recs, recs[1:]))
    print("records whose seq went back:", went_back)


def test_no_verdict_and_no_leak(crashed):
    python, core, objs = crashed
    cmds = []
    for obj in objs[:3]:
        cmds += ["echo @@why\\n", "pyref why --json 0x%x" % obj]
    cmds += ["echo @@leaks\\n", "pyref leaks"]
    out = pyreftest.gdb_batch(cmds, args=[python, core], timeout=600)
    assert "Python Exception" not in out and "Traceback" not in out, out
    parts = out.split("@@why\n")[1:]
    for part in parts:
        text = part.split("@@")[0]
        rep = json.loads(text[text.index("{"):text.rindex("}") + 1])
        assert rep["culprit"] is None and rep["verdict"] not in (
            "double-release", "over-release", "use-after-free"), rep
    leaks = out.split("@@leaks\n", 1)[1]
    for obj in objs:
        assert "0x%x" % obj not in leaks, leaks
    assert "threads_ext.c" not in leaks, leaks
