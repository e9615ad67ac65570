"""The end-to-end check of recording: an unmodified extension built with pyref-config's flags
records the seed patterns, and a real core dump of the crashed process decodes to exactly
the expected records (op, line, before -> after), on every supported interpreter."""
import os

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "seedext.c")
DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "seed_driver.py")
LINES = pyreftest.marker_lines(SRC)
BY_LINE = {v: k for k, v in LINES.items()}
SHIM_OPS = ("INCREF", "DECREF", "DEALLOC")


@pytest.fixture(scope="module")
def built(python, build_extension):
    return build_extension(SRC, python)


def run_pattern(built, tmp_path, pattern, calls=1):
    python, moddir, version = built
    core, proc = pyreftest.run_to_core(python, [DRIVER, moddir, pattern, str(calls)],
                                       cwd=str(tmp_path))
    ring, site = pyreftest.ring_from_core(core)
    assert ring.errors == [], ring.errors
    got = []
    for r in ring.records:
        s = site(r)
        if s and s[0] == "seedext.c" and r.op_name in SHIM_OPS and s[1] in BY_LINE:
            got.append((BY_LINE[s[1]], r.op_name, r.refcnt, r.after, r))
    return got, proc, version, ring


def steps(got):
    return [(m, op, before, after) for m, op, before, after, _ in got]


def test_correct(built, tmp_path):
    got, proc, (major, minor, debug), _ = run_pattern(built, tmp_path, "correct")
    expect = [("correct-incref", "INCREF", 1, 2), ("correct-decref", "DECREF", 2, 1),
              ("correct-dealloc", "DEALLOC", 1, 0)]
    assert steps(got)[:3] == expect
    assert len({r.obj for *_, r in got[:3]}) == 1
    rest = got[3:]
    if minor <= 11:  # Py_RETURN_NONE increfs None before 3.12
        assert [(m, op, after - before) for m, op, before, after, _ in rest] == \
            [("correct-return", "INCREF", 1)]
    else:
        assert rest == []


def test_leak(built, tmp_path):
    got, proc, _, _ = run_pattern(built, tmp_path, "leak", calls=5)
    assert [m for m, *_ in got] == ["leak-incref"] * 5
    objs = {r.obj for *_, r in got}
    assert len(objs) == 1
    befores = [b for _, _, b, _, _ in got]
    assert befores == list(range(befores[0], befores[0] + 5)), befores  # never released
    assert all(a == b + 1 for _, _, b, a, _ in got)
    assert "arg %d" % objs.pop() in proc.stdout


def test_decref_borrowed(built, tmp_path):
    got, *_ = run_pattern(built, tmp_path, "decref_borrowed")
    assert steps(got)[:4] == [
        ("borrowed-incref", "INCREF", 1, 2), ("borrowed-decref", "DECREF", 2, 1),
        ("borrowed-bad-decref", "DEALLOC", 1, 0),
        ("borrowed-tuple-decref", "DEALLOC", 1, 0)]
    item, tup = got[2][4].obj, got[3][4].obj
    assert item == got[0][4].obj and tup != item


def test_steal_then_decref(built, tmp_path):
    got, *_ = run_pattern(built, tmp_path, "steal_then_decref")
    assert steps(got)[:4] == [
        ("steal-incref", "INCREF", 1, 2), ("steal-decref", "DECREF", 2, 1),
        ("steal-bad-decref", "DEALLOC", 1, 0), ("steal-list-clear", "DEALLOC", 1, 0)]


def test_decref_none(built, tmp_path):
    got, proc, (major, minor, debug), _ = run_pattern(built, tmp_path, "decref_none")
    assert [m for m, *_ in got] == ["none-decref"]
    _, op, before, after, rec = got[0]
    assert op == "DECREF"
    assert "none %d" % rec.obj in proc.stdout
    if minor <= 11:
        assert after == before - 1 and not rec.immortal
    else:  # immortal: the count does not move and the record says why
        assert after == before and rec.immortal


def test_all_macros(built, tmp_path):
    got, *_ = run_pattern(built, tmp_path, "all_macros")
    assert steps(got) == [
        ("macros-xincref", "INCREF", 1, 2), ("macros-newref", "INCREF", 2, 3),
        ("macros-xnewref", "INCREF", 3, 4), ("macros-xdecref", "DECREF", 4, 3),
        ("macros-setref", "INCREF", 3, 4), ("macros-setref", "DECREF", 4, 3),
        ("macros-xsetref", "DECREF", 3, 2), ("macros-decref", "DECREF", 2, 1),
        ("macros-clear", "DEALLOC", 1, 0)]
    assert len({r.obj for *_, r in got}) == 1


def test_two_extensions_share_one_ring(built, tmp_path):
    """The README's claim: several traced extensions in one process share one ring (the
    runtime is one libpyref.so), with one sequence across both."""
    python, moddir, _ = built
    other = os.path.join(pyreftest.ROOT, "tests", "ext", "sameext.c")
    pyreftest.build_ext(other, python, moddir)
    code = ("import os, sys; sys.path.insert(0, %r); import seedext, sameext; "
            "seedext.correct(); sameext.trace(object()); seedext.correct(); os.abort()"
            % moddir)
    core, _ = pyreftest.run_to_core(python, ["-c", code], cwd=str(tmp_path))
    ring, site = pyreftest.ring_from_core(core)
    files = [site(r)[0] for r in ring.records if site(r) and r.op_name in SHIM_OPS]
    assert {"seedext.c", "sameext.c"} <= set(files)
    # one sequence: seedext, then sameext, then seedext again, in order
    runs = [f for i, f in enumerate(files) if i == 0 or files[i - 1] != f]
    assert runs == ["seedext.c", "sameext.c", "seedext.c"], runs
    assert ring.threads_seen == 1
