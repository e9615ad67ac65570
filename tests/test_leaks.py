"""`pyref leaks` on real interpreters: a traced extension (tests/ext/owners_ext.c) leaks one
reference per call over 1000 calls, and the top group must be the leaking line with count
1000; a correct extension function called 1000 times must report no leak; a ring too small
for the history must say so. Live (stopped at a breakpoint) and from a core."""
import json
import os
import random
import re

import pytest

import pyreftest
from pyref import decode, verdict
from pyref.rules import events

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
    return events.Event(seq=0, op=op, before=before,
                        after=before + delta if after is None else after,
                        site=decode.Site(0, file, line, func, op) if file else None,
                        immortal=immortal)


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


def test_account_splits_held_from_leaked():
    evs = [ev("NEW", "a", 1, after=1), ev("INCREF", "b", 2), ev("INCREF", "c", 3)]
    lines = lambda es: [e.line for e in es]  # noqa: E731
    # count 3, 2 references found in memory: only the newest acquisition leaked
    assert [lines(x) for x in verdict.account(evs, 3, 2)] == [[3], [1, 2]]
    # count 2 caps the list at the 2 newest; a found holder accounts for one of them
    assert [lines(x) for x in verdict.account(evs, 2, 1)] == [[3], [2]]
    # more holders found than references (some borrow): nothing leaked
    assert [lines(x) for x in verdict.account(evs, 1, 4)] == [[], [3]]
    assert [lines(x) for x in verdict.account(evs, True, 5)] == [[1, 2, 3], []]
    got = verdict.leak_groups({0x10: evs}, {0x10: 3}.get, {0x10: 2}.get)
    assert got == ({("ext.c", 3, "c", "INCREF"): [0x10]},
                   {("ext.c", 1, "a", "NEW"): [0x10], ("ext.c", 2, "b", "INCREF"): [0x10]})


# Raw ring columns for verdict.unbalanced: op byte values as decode writes them.
RAW = {"INCREF": decode.INCREF, "DECREF": decode.DECREF, "DEALLOC": decode.DEALLOC,
       "NEW": decode.NEW, "BORROW": decode.BORROW, "STEAL": decode.STEAL,
       "FREE": decode.FREE, "AUX": decode.AUX}


def columns(records):
    """slot_columns()-shaped runs from [(obj, op, site, refcnt, immortal, seq)]."""
    return [([r[0] for r in records], [r[2] for r in records], [r[3] for r in records],
             bytes(RAW[r[1]] | (decode.IMMORTAL if r[4] else 0) for r in records),
             [r[5] for r in records])]


@pytest.mark.parametrize("seed", range(20))
def test_unbalanced_agrees_with_unreleased(seed):
    """The column pass names exactly the objects whose Events unreleased() keeps
    something for: random histories (resets, ignored releases, immortal records, sites
    that do not resolve, two interleaved threads out of seq order), checked against the
    Event-based rule."""
    rnd = random.Random(seed)
    objs = [0x1000 + 16 * i for i in range(12)]
    sites = {0: None, 0x50: "ext.c", 0x60: "ext.c", 0x70: None}   # 0x70: unreadable
    recs = []
    for seq in rnd.sample(range(4000), 400):
        op = rnd.choice(["INCREF"] * 4 + ["DECREF"] * 4 + ["NEW", "STEAL", "BORROW",
                                                          "DEALLOC", "FREE", "AUX"])
        recs.append((rnd.choice(objs), op, rnd.choice(list(sites)),
                     1 if op == "DEALLOC" else rnd.randrange(1, 4), rnd.random() < 0.05,
                     seq))
    threads = [recs[:200], recs[200:]]         # each thread in its own seq order
    runs = [c for t in threads for c in columns(sorted(t, key=lambda r: r[5]))]
    got = verdict.unbalanced(runs, lambda s: sites[s] is not None)
    by_obj = {}
    for r in sorted(recs, key=lambda r: r[5]):
        site = decode.Site(r[2], sites[r[2]], r[2], "f%d" % (r[2] % 3), r[1]) \
            if sites[r[2]] else None
        by_obj.setdefault(r[0], []).append(events.Event(
            seq=r[5], op=r[1], before=r[3], after=r[3], site=site, immortal=r[4]))
    want = {o for o, evs in by_obj.items() if verdict.unreleased(evs)}
    assert got == want and want, (got, want)


def test_unbalanced_order_matters():
    # DECREF with nothing to match is ignored: INCREF afterwards is unreleased although
    # the object saw as many releases as acquisitions
    rec = [(0x10, "DECREF", 0x50, 2, False, 1), (0x10, "INCREF", 0x50, 1, False, 2),
           (0x20, "INCREF", 0x50, 1, False, 3), (0x20, "DECREF", 0x50, 2, False, 4)]
    assert verdict.unbalanced(columns(rec), bool) == {0x10}


# ---------------------------------------------------------------------------------------
# pyref leaks in gdb
# ---------------------------------------------------------------------------------------
def gdb_sections(python, args, cwd, kind, commands, stop, env=None):
    """Runs the target to its stop (live: a breakpoint on `stop`; core: its SIGABRT),
    then `commands` in gdb: {name: output} of the sections that `echo @@ name` opens,
    and "all": the whole output (gdb's error messages follow all of its stdout)."""
    if kind == "live":
        pre = ["set environment %s %s" % kv for kv in (env or {}).items()]
        out = pyreftest.gdb_batch(pre + ["set breakpoint pending on", "break " + stop,
                                         "run"] + commands,
                                  args=["--args", python] + args, cwd=cwd)
    else:
        core, _ = pyreftest.run_to_core(python, args, cwd=cwd, env=env)
        out = pyreftest.gdb_batch(commands, args=[python, core], cwd=cwd)
    assert "@@ end" in out, out[-3000:]
    assert "internal error" not in out and "Traceback" not in out, out
    assert "Python Exception" not in out, out
    secs = {}
    cur = None
    for line in out.splitlines():
        m = re.match(r"@@ (\w+)$", line)
        if m:
            cur = secs.setdefault(m.group(1), [])
        elif cur is not None:
            cur.append(line)
    secs = {k: "\n".join(v) for k, v in secs.items()}
    secs["all"] = out
    return secs


def build(python, src, tmp_path_factory, cflags=()):
    """(python, module directory, version) of `src` built for `python`."""
    moddir = str(tmp_path_factory.mktemp("leaks-ext"))
    pyreftest.build_ext(src, python, moddir, extra_cflags=cflags)
    return python, moddir, pyreftest.py_version(python)


@pytest.fixture(scope="module", params=pyreftest.interpreters())
def built(request, tmp_path_factory):
    return build(request.param, SRC, tmp_path_factory)


def run(built, tmp_path, kind, mode, calls=1000, env=None):
    python, moddir, _ = built
    return gdb_sections(python, [TARGET, moddir, str(tmp_path), mode, str(calls)],
                        str(tmp_path), kind, COMMANDS, "owners_stop", env)


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
    # each Token is also in the list KEPT (refcount 2, one holder found): still 1 leaked;
    # the search stops at --max-search objects and says so
    assert data["scan"]["candidates"] == 1000 and data["scan"]["searched"] == 256, data
    assert top["searched"] == 256 and data["held"]["total"] == 0, data
    lines = s["text"].splitlines()
    assert lines[0].startswith("1000 unreleased references at 1 site"), s["text"]
    assert re.match(r"\s+1000\s+1000\s+owners_ext\.c:%d \(leak_ref\)\s+Token\s+Py_INCREF  "
                    r"e\.g\. 0x[0-9a-f]+ \(744 not searched in memory\)$"
                    % LINES["leak-incref"], lines[2]), s["text"]
    assert "note: holders searched for 256 of 1000 objects (--max-search 256)" in s["text"]
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
    assert data["held"]["total"] == 0 and data["scan"]["searched"] == 0, data
    # PyModule_Create's new reference goes back to the import system: not a leak
    assert set(data["module_init"]) <= {"PyInit_owners_ext"}
    assert s["text"].startswith("no leaks: every reference traced code acquired to a live "
                                "object was released"), s["text"]
    assert "memory:" not in s["text"]      # nothing to search for
    assert data["records"] >= 1000 * 6  # the balanced calls were recorded


@pytest.fixture(scope="module", params=pyreftest.interpreters())
def built_o0(request, tmp_path_factory):
    """owners_ext at -O0, so that hold_local's local lives in its frame (test_owners)."""
    return build(request.param, SRC, tmp_path_factory, ["-O0"])


@pytest.mark.parametrize("kind", ["live", "core"])
def test_c_holders_account_for_all(built_o0, tmp_path, kind):
    """owners_target.py's 'owners' mode: the only unreleased references are the one
    hold_static keeps in a C static and the one hold_local keeps in a C local of the
    running frame: both held, no leak."""
    python, moddir, _ = built_o0
    s = gdb_sections(python, [TARGET, moddir, str(tmp_path), "owners"], str(tmp_path),
                     kind, COMMANDS, "owners_stop")
    data = json.loads(s["json"])
    assert data["groups"] == [] and data["total"] == 0, data
    held = {(g["function"], g["api"], g["type"]): (g["count"], g["holder"])
            for g in data["held"]["groups"]}
    assert set(held) == {("hold_static", "Py_INCREF", "Token"),
                         ("hold_local", "PyObject_CallNoArgs", "Token")}, data
    assert held[("hold_static", "Py_INCREF", "Token")][0] == 1
    assert "held_static" in held[("hold_static", "Py_INCREF", "Token")][1], held
    assert held[("hold_local", "PyObject_CallNoArgs", "Token")][0] == 1
    assert "held_local" in held[("hold_local", "PyObject_CallNoArgs", "Token")][1], held
    assert s["text"].startswith("no leaks: every unreleased reference traced code acquired "
                                "to a live object is accounted for by holders found in "
                                "memory"), s["text"]
    assert "held, not leaked: 2 references at 2 sites" in s["text"], s["text"]


def test_wrapped_ring(built, tmp_path):
    s = run(built, tmp_path, "core", "leak", calls=3000, env={"PYREF_RING_RECORDS": "1024"})
    data = json.loads(s["json"])
    top = data["groups"][0]
    assert top["line"] == LINES["leak-incref"] and 0 < top["count"] <= 1024, data
    assert re.match(r"the ring wrapped: it holds the last \d+ of \d+ transitions",
                    data["coverage"]), data
    assert "caveat: the ring wrapped" in s["text"], s["text"]


# ---------------------------------------------------------------------------------------
# References returned to Python: held, not leaked (tests/ext/leaks_ext.c)
# ---------------------------------------------------------------------------------------
HELD_SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "leaks_ext.c")
HELD_TARGET = os.path.join(pyreftest.ROOT, "tests", "gdb_targets", "leaks_target.py")
HELD_LINES = pyreftest.marker_lines(HELD_SRC)
N = 20   # objects of each pattern (leaks_target.py)
HELD_COMMANDS = ["source ids.gdb",
                 "echo @@ text\\n", "pyref leaks",
                 "echo @@ json\\n", "pyref leaks --json",
                 "echo @@ noscan\\n", "pyref leaks --no-scan",
                 "echo @@ noscan_json\\n", "pyref leaks --no-scan --json",
                 "echo @@ bounded\\n", "pyref leaks --json --max-search 5",
                 "echo @@ stale\\n", "pyref owners $o_stale",
                 "pyref leaks --max-search 0",
                 "echo @@ end\\n"]


@pytest.fixture(scope="module", params=pyreftest.interpreters())
def held_built(request, tmp_path_factory):
    return build(request.param, HELD_SRC, tmp_path_factory)


@pytest.fixture(scope="module", params=["live", "core"])
def held(request, held_built, tmp_path_factory):
    """(sections, version) of one run of leaks_target.py, live or from its core."""
    python, moddir, version = held_built
    out = str(tmp_path_factory.mktemp("leaks-held-" + request.param))
    return gdb_sections(python, [HELD_TARGET, moddir, out, str(N)], out, request.param,
                        HELD_COMMANDS, "leaks_stop"), version


def by_site(groups):
    """{(marker line, type): (refs, objects)} of JSON groups, keyed by the line's marker."""
    marker = {v: k for k, v in HELD_LINES.items()}
    return {(marker.get(g["line"], g["line"]), g["type"]): (g["count"], g["objects"])
            for g in groups}


def test_returned_reference_is_held(held):
    s, _ = held
    data = json.loads(s["json"])
    got = by_site(data["held"]["groups"])
    # kept in a list (RETURNED, INTS), or by a leaked object's attribute (+1 Token): the
    # leaked Holder still holds its reference
    assert got == {("return-newref", "Token"): (N + 1, N + 1),
                   ("return-long", "int"): (N, N)}, data
    assert data["held"]["total"] == 2 * N + 1 and data["held"]["sites"] == 2
    for g in data["held"]["groups"]:
        assert g["holder"] and g["searched"] == g["objects"], g
    leaked = by_site(data["groups"])
    assert not [k for k in leaked if k[0] in ("return-newref", "return-long")], data
    text = s["text"]
    assert "held, not leaked: %d references at 2 sites accounted for by holders found " \
        "in memory" % (2 * N + 1) in text, text
    assert re.search(r"\n\s+%d\s+%d\s+leaks_ext\.c:%d \(new_int\)\s+int\s+PyLong_FromLong  "
                     r"e\.g\. 0x[0-9a-f]+ in list 0x[0-9a-f]+ item \[\d+\]\n" % (
                         N, N, HELD_LINES["return-long"]), text), text


def test_real_leaks_stay_leaks(held):
    s, _ = held
    data = json.loads(s["json"])
    # N Tokens referenced from nowhere, plus the one a freed list pointed to (a stale
    # word does not hold it); the Holder leaked with its attribute; the N Kept objects
    # (refcount 2: the list ALSO is the one holder found) leaked 1 each
    assert by_site(data["groups"]) == {("leak-incref", "Token"): (N + 1, N + 1),
                                       ("leak-incref", "Holder"): (1, 1),
                                       ("leak-incref", "Kept"): (N, N)}, data
    assert data["total"] == 2 * N + 2 and data["sites"] == 3, data
    assert s["text"].startswith("%d unreleased references at 3 sites" % (2 * N + 2))
    assert re.search(r"memory: [\d.]+ MiB searched", s["text"]), s["text"]


def test_stale_word_does_not_hold(held):
    s, (_, _, debug) = held
    assert "account: refcount 1, 0 owners found, 1 unexplained" in s["stale"], s["stale"]
    if not debug:   # the debug allocator fills freed memory: no stale word is left
        m = re.search(r"not shown: (\d+) stale words \((\d+) a free malloc block",
                      s["stale"])
        assert m and int(m.group(2)) >= 90, s["stale"]


def test_no_scan_is_the_ring_alone(held):
    s, _ = held
    scanned, ring = json.loads(s["json"]), json.loads(s["noscan_json"])
    assert ring["held"] is None and ring["scan"] is None, ring
    assert "searched" not in ring["groups"][0]
    # what the search moved to 'held' is listed as leaked without it
    assert ring["total"] == scanned["total"] + scanned["held"]["total"], (ring, scanned)
    assert by_site(ring["groups"])[("return-newref", "Token")] == (N + 1, N + 1)
    assert by_site(ring["groups"])[("return-long", "int")] == (N, N)
    assert "held" not in s["noscan"] and "memory:" not in s["noscan"], s["noscan"]
    assert s["noscan"].startswith("%d unreleased references at 5 sites" % ring["total"])


def test_json_scan_fields(held):
    s, _ = held
    data = json.loads(s["json"])
    scan = data["scan"]
    cands = 4 * N + 3        # every object with an unreleased reference
    assert (scan["candidates"], scan["searched"], scan["limit"]) == (cands, cands, 256)
    assert scan["bytes"] > 1 << 20 and scan["passes"] >= 1 and scan["seconds"] >= 0
    assert scan["text"].split(" MiB searched")[0].replace(".", "").isdigit(), scan
    assert all(g["searched"] == g["objects"] for g in data["groups"]), data
    # --max-search 5: 5 objects searched, taken from both sites of leak candidates in
    # turn; the rest stay leaks, each group saying how many of its objects were searched
    bounded = json.loads(s["bounded"])
    b = bounded["scan"]
    assert (b["candidates"], b["searched"], b["limit"]) == (cands, 5, 5), b
    assert sum(g["searched"] for g in bounded["groups"] + bounded["held"]["groups"]) <= 5
    assert bounded["held"]["total"] <= 5 and bounded["total"] + bounded["held"]["total"] \
        == data["total"] + data["held"]["total"]
    assert "\npyref: --max-search wants a positive number (--no-scan: none)\n" in s["all"]
