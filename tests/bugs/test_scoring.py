"""The corpus's scoring rules (tests/bugs/scoring.py, tests/bugs/README.md) on synthetic
pyref output: no gdb, no interpreter."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scoring  # noqa: E402

SRC = "case.c"
LINES = {"origin": 10, "culprit": 12, "use": 14, "acquire": 20, "lost": 22, "also": 16}
UAF = {"kind": "use-after-free", "culprit": "culprit", "also": ["also"], "origin": "origin",
       "involved": ["use"]}
LEAK = {"kind": "leak", "culprit": "lost", "acquire": "acquire", "lost": "lost"}
CONTROL = {"kind": "none"}


def why(verdict, line=None, file="/src/case.c"):
    return {"verdict": verdict,
            "culprit": None if line is None else {"file": file, "line": line, "op": "DECREF"}}


def leaks(*lines, file="/src/case.c"):
    return {"groups": [{"file": file, "line": n, "count": 5} for n in lines]}


CASES = [
    # (expectation, why, leaks, score, line shown)
    (UAF, why("use-after-free", 12), None, "ok", ":12 @culprit"),
    (UAF, why("premature-free", 16), None, "ok", ":16 @also"),           # an equal fix
    (UAF, why("double-release", 10), None, "wrong", ":10 @origin"),      # involved, not right
    (UAF, why("use-after-free", 14), None, "wrong", ":14 @use"),
    (UAF, why("use-after-free", 30), None, "false-blame", ":30"),         # correct code
    (UAF, why("use-after-free", 30, file="/usr/include/object.h"), None, "wrong",
     "object.h:30"),                                                      # not the case's code
    (UAF, why("unknown"), None, "unknown", "-"),
    (UAF, why("double-release"), None, "unknown", "-"),                   # no line: no culprit
    (UAF, why("not-a-refcount-bug"), None, "wrong", "-"),                 # confident and wrong
    (UAF, why("use-after-free", 12), leaks(30), "false-blame", ":30"),    # a false leak row
    (UAF, None, None, "unknown", "-"),                                    # no output at all
    (UAF, {"verdict": "use-after-free", "culprit": {"file": "/src/case.c"}}, None,
     "unknown", "-"),                                                     # culprit without a line
    (LEAK, why("not-a-refcount-bug"), leaks(20), "ok", ":20 @acquire"),  # why is not primary
    (LEAK, why("unknown"), leaks(22, 20), "ok", ":22 @lost"),
    (LEAK, why("unknown"), leaks(20, 31), "false-blame", ":31"),
    (LEAK, why("unknown"), leaks(), "unknown", "-"),
    (LEAK, why("double-release", 20), leaks(20), "wrong", ":20 @acquire"),
    (LEAK, why("unknown"), {"groups": [{"line": 20}]}, "wrong", "?:20"),  # no file
    (CONTROL, why("not-a-refcount-bug"), leaks(), "ok", "-"),
    (CONTROL, why("unknown"), None, "ok", "-"),
    (CONTROL, why("double-release", 12), None, "false-blame", ":12 @culprit"),
    (CONTROL, why("double-release"), None, "false-blame", "-"),           # a verdict, no line
    (CONTROL, why("unknown"), leaks(20), "false-blame", ":20 @acquire"),
    (CONTROL, {"groups": "garbage"}, {"groups": [None, 3]}, "ok", "-"),  # tolerated
]


@pytest.mark.parametrize("expect,why_json,leaks_json,want,line", CASES)
def test_score(expect, why_json, leaks_json, want, line):
    s = scoring.score(expect, LINES, SRC, why=why_json, leaks=leaks_json)
    assert (s.score, s.line) == (want, line), s


def test_marker_sets():
    assert sorted(scoring.right_markers(LEAK)) == ["acquire", "lost", "lost"]
    assert sorted(scoring.right_markers(UAF)) == ["also", "culprit"]
    assert sorted(scoring.involved_markers(UAF)) == ["also", "culprit", "origin", "use"]
    # a list where a single marker is usual
    assert scoring.right_markers({"kind": "leak", "culprit": "c", "acquire": ["a", "b"]}) == \
        ["c", "a", "b"]


def test_every_kind_has_a_family():
    assert set(scoring.KINDS) == set(scoring.FAMILY)
    assert scoring.FAMILY["none"] == frozenset()
    assert all(scoring.FAMILY[k] for k in scoring.KINDS if k != "none")
