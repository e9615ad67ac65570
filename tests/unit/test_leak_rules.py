"""The leak analysis of `pyref leaks` (gdbext/pyref/rules/leaks.py) on hand-written events
and ring columns, without gdb: which acquisitions are unreleased, how the reference count
caps them and holders found in memory account for them, and that the whole-ring column
pass agrees with the Event-based rule."""
import random

import pytest

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader import ringformat
from pyref.reader.sites import Site
from pyref.rules import events, leaks


def ev(op, func="f", line=1, before=1, after=None, file="ext.c", immortal=False):
    delta = {"INCREF": 1, "DECREF": -1, "DEALLOC": -1}.get(op, 0)
    return events.Event(seq=0, op=op, before=before,
                        after=before + delta if after is None else after,
                        site=Site(0, file, line, func, op) if file else None,
                        immortal=immortal)


def test_unreleased_matches_releases_by_function():
    evs = [ev("INCREF", "a", 1), ev("INCREF", "b", 2), ev("DECREF", "a", 3),
           ev("INCREF", "a", 4), ev("STEAL", "c", 5)]
    # a's DECREF releases a's INCREF; c's STEAL (no acquisition of its own) the newest
    assert [(e.func, e.line) for e in leaks.unreleased(evs)] == [("b", 2)]


def test_unreleased_current_lifetime_only():
    old = [ev("INCREF", "a", 1), ev("DEALLOC", "b", 2, before=1)]
    fresh = [ev("NEW", "c", 3, before=1, after=1)]
    assert [e.line for e in leaks.unreleased(old + fresh)] == [3]
    # a NEW with count 1 starts a new object even when the old one's end was not seen
    assert [e.line for e in leaks.unreleased([ev("INCREF", "a", 1)] + fresh)] == [3]
    # immortal (3.12+) and runtime records are not references
    assert leaks.unreleased([ev("INCREF", immortal=True), ev("FREE", file=None)]) == []


def test_leaks_groups_and_caps_by_refcount():
    a, b, dead = 0x10, 0x20, 0x30
    events = {a: [ev("INCREF", "leak", 7)] * 3, b: [ev("INCREF", "leak", 7)],
              dead: [ev("INCREF", "leak", 7)]}
    counts = {a: 2, b: True, dead: None}
    got = leaks.leaks(events, counts.get)
    assert got == {("ext.c", 7, "leak", "INCREF"): [a, a, b]}  # a: capped at its count 2


def test_account_splits_held_from_leaked():
    evs = [ev("NEW", "a", 1, after=1), ev("INCREF", "b", 2), ev("INCREF", "c", 3)]
    lines = lambda es: [e.line for e in es]  # noqa: E731
    # count 3, 2 references found in memory: only the newest acquisition leaked
    assert [lines(x) for x in leaks.account(evs, 3, 2)] == [[3], [1, 2]]
    # count 2 caps the list at the 2 newest; a found holder accounts for one of them
    assert [lines(x) for x in leaks.account(evs, 2, 1)] == [[3], [2]]
    # more holders found than references (some borrow): nothing leaked
    assert [lines(x) for x in leaks.account(evs, 1, 4)] == [[], [3]]
    assert [lines(x) for x in leaks.account(evs, True, 5)] == [[1, 2, 3], []]
    got = leaks.leak_groups({0x10: evs}, {0x10: 3}.get, {0x10: 2}.get)
    assert got == ({("ext.c", 3, "c", "INCREF"): [0x10]},
                   {("ext.c", 1, "a", "NEW"): [0x10], ("ext.c", 2, "b", "INCREF"): [0x10]})


# Raw ring columns for leaks.unbalanced: op byte values as decode writes them.
RAW = {"INCREF": ringformat.INCREF, "DECREF": ringformat.DECREF, "DEALLOC": ringformat.DEALLOC,
       "NEW": ringformat.NEW, "BORROW": ringformat.BORROW, "STEAL": ringformat.STEAL,
       "FREE": ringformat.FREE, "AUX": ringformat.AUX}


def columns(records):
    """slot_columns()-shaped runs from [(obj, op, site, refcnt, immortal, seq)]."""
    return [([r[0] for r in records], [r[2] for r in records], [r[3] for r in records],
             bytes(RAW[r[1]] | (ringformat.IMMORTAL if r[4] else 0) for r in records),
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
    got = leaks.unbalanced(runs, lambda s: sites[s] is not None)
    by_obj = {}
    for r in sorted(recs, key=lambda r: r[5]):
        site = Site(r[2], sites[r[2]], r[2], "f%d" % (r[2] % 3), r[1]) \
            if sites[r[2]] else None
        by_obj.setdefault(r[0], []).append(events.Event(
            seq=r[5], op=r[1], before=r[3], after=r[3], site=site, immortal=r[4]))
    want = {o for o, evs in by_obj.items() if leaks.unreleased(evs)}
    assert got == want and want, (got, want)


def test_unbalanced_order_matters():
    # DECREF with nothing to match is ignored: INCREF afterwards is unreleased although
    # the object saw as many releases as acquisitions
    rec = [(0x10, "DECREF", 0x50, 2, False, 1), (0x10, "INCREF", 0x50, 1, False, 2),
           (0x20, "INCREF", 0x50, 1, False, 3), (0x20, "DECREF", 0x50, 2, False, 4)]
    assert leaks.unbalanced(columns(rec), bool) == {0x10}


# ---------------------------------------------------------------------------------------
# The report of pyref leaks (leaks.report), on hand-written events
# ---------------------------------------------------------------------------------------
TOKEN, INT, NONE, MOD, DEAD, KEPT = 0x100, 0x200, 0x300, 0x400, 0x500, 0x600
COUNTS = {TOKEN: 2, INT: 1, MOD: 1, DEAD: None, KEPT: 3}
TYPES = {TOKEN: "Token", INT: "int", MOD: "module", KEPT: "Kept"}
EVENTS = {
    TOKEN: [ev("INCREF", "leak", 7), ev("INCREF", "leak", 7)],
    INT: [ev("NEW", "new_int", 9, after=1)],
    NONE: [ev("INCREF", "ret_none", 3)] * 4,            # Py_RETURN_NONE
    MOD: [ev("NEW", "PyInit_m", 20, after=1)],           # returned to the import system
    DEAD: [ev("INCREF", "leak", 7)],                     # freed since: leaked nothing
    KEPT: [ev("INCREF", "keep", 31)] * 4,              # capped at its count 3
}


def rings_of(wrapped):
    """A real decoded ring (tests/ringimage.py) for the coverage line: wrapped or not."""
    from ringimage import Writer
    w = Writer(capacity=8)
    w.register(0)
    for _ in range(12 if wrapped else 3):
        w.record(0, 0x10)
    return [w.decode()]


def leak_report(holders=None, search=leaks.MAX_LEAK_SCAN, top=20, wrapped=False):
    return leaks.report(EVENTS, COUNTS.get, lambda o: TYPES.get(o, "?"), {NONE: "None"},
                        rings_of(wrapped), ["a note"], holders, top, search)


def holders_found(found):
    def holders(objs, problems):
        return ({o: found.get(o, 0) for o in objs}, {o: "list 0x1 item [%d]" % o
                                                    for o in objs if found.get(o)},
                {"bytes": 4096, "passes": 1, "seconds": 0.0, "text": "4 KiB searched"})
    return holders


def groups(rep, key="groups"):
    part = rep if key == "groups" else rep[key]
    return {(g["function"], g["type"]): (g["count"], g["objects"]) for g in part["groups"]}


def test_report_ring_alone():
    rep = leak_report(search=0)
    assert groups(rep) == {("leak", "Token"): (2, 1), ("new_int", "int"): (1, 1),
                           ("keep", "Kept"): (3, 1)}
    assert (rep["total"], rep["sites"], rep["held"], rep["scan"]) == (6, 3, None, None)
    assert rep["singletons"] == {"None": 4} and rep["module_init"] == {"PyInit_m": 1}
    assert rep["problems"] == ["a note"] and rep["coverage"] is None
    assert rep["records"] == 3


def test_report_holders_account_for_references():
    rep = leak_report(holders_found({TOKEN: 1, INT: 1, KEPT: 5}))
    assert groups(rep) == {("leak", "Token"): (1, 1)}     # count 2, one holder: one leaked
    assert groups(rep, "held") == {("leak", "Token"): (1, 1), ("new_int", "int"): (1, 1),
                                   ("keep", "Kept"): (3, 1)}
    assert rep["held"]["groups"][0]["holder"].startswith("list 0x1 item")
    scan = rep["scan"]
    assert (scan["candidates"], scan["searched"], scan["limit"]) == \
        (3, 3, leaks.MAX_LEAK_SCAN), scan
    assert all(g["searched"] == g["objects"] for g in rep["groups"])


def test_report_search_bounded_takes_each_site_in_turn():
    rep = leak_report(holders_found({}), search=2)
    assert rep["scan"]["searched"] == 2
    searched = {g["function"]: g["searched"] for g in rep["groups"]}
    assert sorted(searched.values()) == [0, 1, 1], searched


def test_report_when_memory_cannot_be_searched():
    def fails(objs, problems):
        raise leaks.PyrefError("no mappings")
    rep = leak_report(fails)
    assert groups(rep) == groups(leak_report(search=0))   # the ring's answer stands
    assert rep["problems"] == ["a note", "memory not searched for holders: no mappings"]
    assert rep["scan"]["searched"] == 0


def test_report_top_and_coverage():
    rep = leak_report(search=0, top=1, wrapped=True)
    assert len(rep["groups"]) == 1 and rep["more_groups"] == 2
    assert rep["groups"][0]["function"] == "keep"          # the biggest group first
    assert rep["coverage"].startswith("the ring wrapped: it holds the last 8 of 12 "
                                      "transitions (sequence 4..11)")


def test_a_call_that_took_two_references_leaks_the_one_it_chose():
    """A memo's miss: the call's NEW, then a surplus INCREF before the cache stores it;
    a later hit's INCREF is returned. Count 2 (cache and leak), the cache found: the
    leaked one is the miss's INCREF, the hit's is listed as what it may equally be."""
    miss_new = events.Event(seq=10, op="NEW", before=1, after=1,
                            site=Site(0, "m.c", 70, "memo_call", "PyObject_Call"))
    miss_incref = events.Event(seq=11, op="INCREF", before=1, after=2,
                               site=Site(0, "m.c", 75, "memo_call", "Py_INCREF"))
    hit = events.Event(seq=900, op="INCREF", before=2, after=3,
                       site=Site(0, "m.c", 65, "memo_call", "Py_INCREF"))
    held = [miss_new, miss_incref, hit]
    leaked, accounted = leaks.account(held, 2, 1)
    assert [e.line for e in leaked] == [75]
    assert [e.line for e in leaked + accounted] == [75, 70]
    assert [e.line for e in leaks.ambiguous(held, 2, 1)] == [65]
    # one acquisition per call (the fixed memo): the most recent, as before
    assert [e.line for e in leaks.account([miss_new, hit], 1, 0)[0]] == [65]


def test_static_objects_are_counted_apart():
    small_int = 0x50
    evs = {small_int: [ev("NEW", "size", 9, before=999999999, after=999999999)]}
    static = {}
    got = leaks.leak_groups(evs, {small_int: 1000000000}.get, static=static)
    assert got == ({}, {}) and static == {small_int: 1}


def test_report_lists_singletons_by_site_on_311_and_notes_them_on_312():
    none = 0x900
    evs = {none: [ev("NEW", "for_each", 26), ev("INCREF", "ret", 40)]}
    rep = leaks.report(evs, lambda o: None, lambda o: "?", {none: "None"}, [], minor=11,
                       search=0)
    assert [(g["object"], g["line"], g["count"]) for g in rep["singleton_sites"]] == \
        [("None", 26, 1), ("None", 40, 1)]
    assert rep["groups"] == [] and rep["singleton_note"].startswith("references to "
                                                                     "singletons are real")
    rep = leaks.report(evs, lambda o: None, lambda o: "?", {none: "None"}, [], minor=12,
                       search=0)
    assert rep["singleton_sites"] == [] and "immortal on 3.12" in rep["singleton_note"]


def test_lost_path_reads_the_acquiring_functions_later_records():
    acq = ev("NEW", "total", 22)
    s = lambda func, line: Site(0, "ext.c", line, func)  # noqa: E731
    # the loop came round to the acquisition's line: lost in the loop body
    got = leaks.lost_path(acq, [s("helper", 5), s("total", 27), s("total", 22)])
    assert got["line"] == 27 and got["note"].startswith("line 22 ran again (the loop's "
                                                        "next turn, or the next call")
    # an error label's cleanup is the last record: the path through it
    got = leaks.lost_path(acq, [None, s("total", 40), s("total", 41), s("other", 3)])
    assert got["line"] == 41 and "error return" in got["note"]
    # nothing more of the function: lost before its next transition
    got = leaks.lost_path(acq, [s("other", 3)])
    assert got["line"] is None and "no later record of total" in got["note"]


@pytest.mark.parametrize("seed", range(30))
def test_unbalanced_counts_are_unreleased_lengths(seed):
    """unbalanced_counts() gives each object len(unreleased()) of its Events: long
    histories of few addresses (lifetimes reset by DEALLOC, FREE and NEW with count 1,
    releases with nothing to match), three threads whose runs interleave, and a second
    run of equal seqs (another ring's counter: ties go in run order)."""
    rnd = random.Random(seed)
    objs = [0x1000 + 16 * i for i in range(6)]
    sites = {0x50: "ext.c", 0x60: "ext.c", 0x70: None}
    ops = ["INCREF"] * 5 + ["DECREF"] * 5 + ["NEW", "NEW", "STEAL", "DEALLOC", "FREE"]
    recs = []
    seqs = rnd.sample(range(5000), 600) + rnd.sample(range(5000), 200)   # ties
    for k, seq in enumerate(seqs):
        op = rnd.choice(ops)
        recs.append((rnd.choice(objs), op, rnd.choice(list(sites)),
                     1 if op == "DEALLOC" else rnd.choice([1, 1, 2, 3]),
                     rnd.random() < 0.03, seq, k // 200))
    runs, order = [], []
    for t in range(4):                      # each run in its own seq order
        mine = sorted((r for r in recs if r[6] == t), key=lambda r: r[5])
        runs += columns(mine)
        order += mine
    got = leaks.unbalanced_counts(runs, lambda s: sites[s] is not None)
    by_obj = {}
    for r in sorted(order, key=lambda r: r[5]):       # stable: ties in run order
        site = Site(r[2], sites[r[2]], r[2], "f%d" % (r[2] % 3), r[1]) \
            if sites[r[2]] else None
        by_obj.setdefault(r[0], []).append(events.Event(
            seq=r[5], op=r[1], before=r[3], after=r[3], site=site, immortal=r[4]))
    want = {o: len(leaks.unreleased(evs)) for o, evs in by_obj.items()
            if leaks.unreleased(evs)}
    assert got == want
