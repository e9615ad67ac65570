"""`pyref leaks` on real interpreters: a traced extension (tests/ext/owners_ext.c) leaks one
reference per call over 1000 calls, and the top group must be the leaking line with count
1000; a correct extension function called 1000 times must report no leak; a ring too small
for the history must say so. Live (stopped at a breakpoint) and from a core."""
import json
import os
import re

import pytest

import pyreftest
from pyref import verdict

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "owners_ext.c")
TARGET = os.path.join(pyreftest.ROOT, "tests", "gdb_targets", "owners_target.py")
LINES = pyreftest.marker_lines(SRC)
COMMANDS = ["echo @@ text\\n", "pyref leaks", "echo @@ json\\n", "pyref leaks --json",
            "echo @@ top\\n", "pyref leaks --top 1", "echo @@ end\\n"]


# ---------------------------------------------------------------------------------------
# The rule (verdict.unreleased / verdict.leaks), without gdb
# ---------------------------------------------------------------------------------------
def ev(op, func="f", line=1, before=1, after=None, file="ext.c", immortal=False):
    delta = {"INCREF": 1, "DECREF": -1, "DEALLOC": -1}.get(op, 0)
    return verdict.Event(seq=0, op=op, before=before,
                         after=before + delta if after is None else after, file=file,
                         line=line, func=func, api=op, immortal=immortal)


def test_unreleased_matches_releases_by_function():
    evs = [ev("INCREF", "a", 1), ev("INCREF", "b", 2), ev("DECREF", "a", 3),
           ev("INCREF", "a", 4), ev("STEAL", "c", 5)]
    # a's DECREF releases a's INCREF; c's STEAL (no acquisition of its own) the newest
    assert [(e.func, e.line) for e in verdict.unreleased(evs)] == [("b", 2)]


def test_unreleased_current_lifetime_only():
    old = [ev("INCREF", "a", 1), ev("DEALLOC", "b", 2, before=1)]
    fresh = [ev("NEW", "c", 3, before=1, after=1)]
    assert [e.line for e in verdict.unreleased(old + fresh)] == [3]
    # a NEW with count 1 starts a new object even when the old one's end was not seen
    assert [e.line for e in verdict.unreleased([ev("INCREF", "a", 1)] + fresh)] == [3]
    # immortal (3.12+) and runtime records are not references
    assert verdict.unreleased([ev("INCREF", immortal=True), ev("FREE", file=None)]) == []


def test_leaks_groups_and_caps_by_refcount():
    a, b, dead = 0x10, 0x20, 0x30
    events = {a: [ev("INCREF", "leak", 7)] * 3, b: [ev("INCREF", "leak", 7)],
              dead: [ev("INCREF", "leak", 7)]}
    counts = {a: 2, b: True, dead: None}
    got = verdict.leaks(events, counts.get)
    assert got == {("ext.c", 7, "leak", "INCREF"): [a, a, b]}  # a: capped at its count 2


# ---------------------------------------------------------------------------------------
# pyref leaks in gdb
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=pyreftest.interpreters())
def built(request, tmp_path_factory):
    python = request.param
    moddir = str(tmp_path_factory.mktemp("leaks-ext"))
    pyreftest.build_ext(SRC, python, moddir)
    return python, moddir, pyreftest.py_version(python)


def run(built, tmp_path, kind, mode, calls=1000, env=None):
    python, moddir, _ = built
    args = [TARGET, moddir, str(tmp_path), mode, str(calls)]
    if kind == "live":
        pre = ["set environment %s %s" % kv for kv in (env or {}).items()]
        out = pyreftest.gdb_batch(pre + ["set breakpoint pending on", "break owners_stop",
                                         "run"] + COMMANDS,
                                  args=["--args", python] + args, cwd=str(tmp_path))
    else:
        core, _ = pyreftest.run_to_core(python, args, cwd=str(tmp_path), env=env)
        out = pyreftest.gdb_batch(COMMANDS, args=[python, core], cwd=str(tmp_path))
    assert "@@ end" in out, out[-3000:]
    assert "internal error" not in out and "Traceback" not in out, out
    secs = {}
    cur = None
    for line in out.splitlines():
        m = re.match(r"@@ (\w+)$", line)
        if m:
            cur = secs.setdefault(m.group(1), [])
        elif cur is not None:
            cur.append(line)
    return {k: "\n".join(v) for k, v in secs.items()}


@pytest.mark.parametrize("kind", ["live", "core"])
def test_leak_per_call(built, tmp_path, kind):
    s = run(built, tmp_path, kind, "leak")
    data = json.loads(s["json"])
    top = data["groups"][0]
    assert (os.path.basename(top["file"]), top["line"], top["function"], top["api"],
            top["type"], top["count"], top["objects"]) == \
        ("owners_ext.c", LINES["leak-incref"], "leak_ref", "Py_INCREF", "Token", 1000, 1000)
    assert data["total"] == 1000 and data["sites"] == 1, data
    assert data["coverage"] is None
    lines = s["text"].splitlines()
    assert lines[0].startswith("1000 unreleased references at 1 site"), s["text"]
    assert re.match(r"\s+1000\s+1000\s+owners_ext\.c:%d \(leak_ref\)\s+Token\s+Py_INCREF  "
                    r"e\.g\. 0x[0-9a-f]+$" % LINES["leak-incref"], lines[2]), s["text"]
    # Py_RETURN_NONE's references to None are counted apart (immortal on 3.12+)
    _, minor, _ = built[2]
    if minor <= 11:
        assert "not counted: 1000 to None (singletons" in s["text"], s["text"]
    assert json.loads(s["json"])["singletons"] == ({"None": 1000} if minor <= 11 else {})


@pytest.mark.parametrize("kind", ["live", "core"])
def test_correct_program(built, tmp_path, kind):
    s = run(built, tmp_path, kind, "correct")
    data = json.loads(s["json"])
    assert data["groups"] == [] and data["total"] == 0, data
    # PyModule_Create's new reference goes back to the import system: not a leak
    assert set(data["module_init"]) <= {"PyInit_owners_ext"}
    assert s["text"].startswith("no leaks: every reference traced code acquired to a live "
                                "object was released"), s["text"]
    assert data["records"] >= 1000 * 6  # the balanced calls were recorded


def test_wrapped_ring(built, tmp_path):
    s = run(built, tmp_path, "core", "leak", calls=3000, env={"PYREF_RING_RECORDS": "1024"})
    data = json.loads(s["json"])
    top = data["groups"][0]
    assert top["line"] == LINES["leak-incref"] and 0 < top["count"] <= 1024, data
    assert re.match(r"the ring wrapped: it holds the last \d+ of \d+ transitions",
                    data["coverage"]), data
    assert "caveat: the ring wrapped" in s["text"], s["text"]
