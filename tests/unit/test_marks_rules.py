"""rules/marks.py (which test acquired each leaked reference, what grows under repetition,
the singletons' drift) and rules/suppress.py (pyref-run's suppression file and
--min-refs), on facts built by hand: marks as Ring.marks() gives them, leaked acquisitions
as rules/leaks.py hands them over. No gdb."""
import pytest

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.errors import PyrefError
from pyref.reader.sites import Site
from pyref.rules import marks, suppress
from pyref.rules.events import Event

LEAK = ("/src/_speedups.c", 707, "encode_dict", "PyIter_Next")
CACHE = ("/src/_speedups.c", 90, "get_cache", "PyDict_New")


def ev(seq, site=LEAK):
    return (site, Event(seq=seq, op="NEW", before=1, after=1, site=Site(0, *site)))


def timeline(*tests, repeat=1, drift=None):
    """Marks for tests run one after the other, 100 seqs each run, from seq 1000."""
    out, seq = [], 1000
    for t in tests:
        for k in range(1, repeat + 1):
            label = t if repeat == 1 else "%s #%d" % (t, k)
            out.append((seq, 0, "test:start " + label, True))
            if drift and t in drift:
                out.append((seq + 98, 0, "test:drift " + drift[t], True))
            out.append((seq + 99, 0, "test:end " + label, True))
            seq += 100
    return out


def test_each_reference_belongs_to_the_test_that_acquired_it():
    m = timeline("t.py::test_a", "t.py::test_encode_dict")
    leaked = [ev(1150 + i) for i in range(40)] + [ev(1010), ev(5), ev(1099 + 100 * 9)]
    rep = marks.by_test(m, leaked)
    assert [(r["test"], r["count"]) for r in rep["leaks"]] == [
        ("t.py::test_encode_dict", 40), ("t.py::test_a", 1)]
    assert rep["outside"] == 2                   # before the first test, after the last
    assert marks.text_lines(rep)[1] == \
        "  t.py::test_encode_dict: 40 refs from _speedups.c:707 (PyIter_Next)"


def test_no_marks_no_tests_part():
    assert marks.by_test([], [ev(1)]) is None
    assert marks.text_lines(None) == [] and marks.failing(None) == 0


def test_a_label_of_the_users_names_what_follows_it():
    rep = marks.by_test([(10, 0, "phase 2", True)], [ev(11), ev(12)])
    assert [(r["test"], r["count"]) for r in rep["leaks"]] == [("phase 2", 2)]


def test_repeat_reports_what_grows_and_lists_a_cache_apart():
    m = timeline("t.py::test_x", repeat=3)
    # the leak: 10 per run; the cache: 5 in the first run only
    leaked = [ev(1000 + 100 * k + 1 + i) for k in range(3) for i in range(10)] + \
        [ev(1050 + i, CACHE) for i in range(5)]
    rep = marks.by_test(m, leaked)
    assert rep["repeat"] == 3
    assert [(r["line"], r["runs"], r["per_run"]) for r in rep["leaks"]] == [(707, [10, 10, 10],
                                                                              10)]
    assert [(r["line"], r["runs"]) for r in rep["steady"]] == [(90, [5, 0, 0])]
    assert marks.failing(rep) == 30
    text = marks.text_lines(rep)
    assert "  t.py::test_x: grows by 10 refs per run from _speedups.c:707 (PyIter_Next) " \
        "(runs: 10 10 10)" in text
    assert any(line.startswith("  steady, not a leak: t.py::test_x: 5 refs") for line in text)


def test_a_site_that_skips_a_later_run_does_not_grow():
    m = timeline("t.py::test_x", repeat=3)
    leaked = [ev(1001), ev(1101)]                 # runs 1 and 2, not 3
    rep = marks.by_test(m, leaked)
    assert rep["leaks"] == [] and rep["steady"][0]["runs"] == [1, 1, 0]


def test_singleton_drift_is_reported_from_the_threshold_up():
    m = timeline("t.py::test_parent", "t.py::test_ok",
                 drift={"t.py::test_parent": "None=-100 True=1", "t.py::test_ok": "None=-2"})
    rep = marks.by_test(m, [])
    assert rep["drift"] == [{"test": "t.py::test_parent", "name": "None", "deltas": [-100]}]
    assert marks.failing(rep) == 1
    assert marks.text_lines(rep)[0].startswith(
        "  t.py::test_parent: None's count fell by 100 (no record in the ring")


def test_drift_under_repeat_needs_every_later_run():
    m = timeline("t.py::a", repeat=3, drift={"t.py::a": "None=-50"})
    assert marks.by_test(m, [])["drift"][0]["deltas"] == [-50, -50, -50]
    m = [x for x in m if not (x[2].startswith("test:drift") and x[0] > 1200)]
    assert marks.by_test(m, [])["drift"] == []    # run 3 did not drift


def test_parse_labels():
    assert marks.parse("test:start a.py::t[1 2] #3") == ("start", "a.py::t[1 2]", 3, None)
    assert marks.parse("test:end a.py::t") == ("end", "a.py::t", 1, None)
    assert marks.parse("test:drift None=-3 bad True=x") == ("drift", None, 1, {"None": -3})
    assert marks.parse("anything") == ("label", "anything", 1, None)


# ---------------------------------------------------------------------------------------
# Suppressions
# ---------------------------------------------------------------------------------------
def report(*rows):
    groups = [dict(file=f, line=n, function=fn, api=api, type="int", count=c)
              for (f, n, fn, api), c in rows]
    return {"groups": groups, "total": sum(g["count"] for g in groups), "sites": len(groups),
            "more_groups": 0, "tests": None}


def test_suppression_file_format():
    rules = suppress.parse("# known\n\nleak:encode_*   # a glob\nleak:_speedups.c:90\n"
                           "leak:*/vendor/*\nleak:PyIter_Next\n")
    assert [repr(r) for r in rules] == ["leak:encode_*", "leak:_speedups.c:90",
                                        "leak:*/vendor/*", "leak:PyIter_Next"]
    with pytest.raises(PyrefError, match=r"^f.supp:2: want leak:FUNCTION"):
        suppress.parse("leak:x\nleek:y\n", "f.supp")
    with pytest.raises(PyrefError):
        suppress.parse("leak:\n")


@pytest.mark.parametrize("rule, suppressed", [
    ("leak:encode_dict", True), ("leak:encode_*", True), ("leak:encode", False),
    ("leak:_speedups.c", True), ("leak:/src/_speedups.c", True), ("leak:*.c", True),
    ("leak:_speedups.c:707", True), ("leak:_speedups.c:708", False),
    ("leak:/src/*:707", True), ("leak:PyIter_Next", True), ("leak:other.c", False)])
def test_a_rule_matches_function_file_line_or_api(rule, suppressed):
    out = suppress.apply(report((LEAK, 1000)), suppress.parse(rule))
    assert (out["total"] == 0) == suppressed
    assert out["failing"] == (0 if suppressed else 1000)
    if suppressed:
        assert out["suppressed"] == {rule: 1000}


def test_min_refs_and_the_tests_rows_follow():
    rep = report((LEAK, 1000), (CACHE, 3))
    rep["tests"] = marks.by_test(timeline("t.py::a"), [ev(1001)] * 3 + [ev(1002, CACHE)])
    out = suppress.apply(rep, [], min_refs=4)
    assert [g["line"] for g in out["groups"]] == [707]
    assert (out["total"], out["sites"], out["failing"]) == (1000, 1, 1000)
    assert out["suppressed"] == {"below --min-refs": 3}
    assert out["tests"]["leaks"] == []            # 3 and 1 refs: below 4 too
    assert rep["total"] == 1003                   # the input is not changed


def test_under_repeat_only_what_grows_fails():
    rep = report((LEAK, 30), (CACHE, 5))
    m = timeline("t.py::x", repeat=3)
    rep["tests"] = marks.by_test(m, [ev(1000 + 100 * k + 1) for k in range(3)] +
                                 [ev(1002, CACHE)])
    assert suppress.apply(rep)["failing"] == 3


def test_a_wrapped_ring_leaves_what_precedes_its_oldest_mark_without_a_test():
    m = timeline("t.py::b", repeat=2)             # t.py::a's marks were overwritten
    leaked = [ev(900), ev(1001), ev(1101)]
    assert marks.by_test(m, leaked)["outside"] == 1
    rep = marks.by_test(m, leaked, wrapped=True)
    assert (rep["outside"], rep["unknown"]) == (0, 1)
    assert marks.failing(rep) == 2 + 1            # under --repeat nothing says it is steady
    assert "  test unknown: 1 refs acquired before the oldest mark the ring still holds " \
        "(a larger --ring keeps more)" in marks.text_lines(rep)
