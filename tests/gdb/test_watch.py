"""`pyref watch` in `gdb -batch` on real interpreters: one object (tests/ext/watch_ext.c)
goes through a known series of INCREF/DECREFs, two of them made by CPython for the
extension; the log must be exactly that series, each change at its marker line, in a
traced build (with the matching ring record) and in an untraced one. Then the stop
conditions, the refusals (core file, immortal object, debug registers used up), reverse
execution (gdb's `record full`; rr when it can record here) and the Python stack."""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "watch_ext.c")
DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "watch_driver.py")
LINES = pyreftest.marker_lines(SRC)
PYLINES = {m: n for n, text in enumerate(open(DRIVER), 1)
           for m in re.findall(r"#\s*@([\w-]+)", text)}

# (before, after, marker, made inside CPython on the extension's behalf)
SERIES = [(1, 2, "inc1", False), (2, 3, "inc2", False), (3, 2, "dec1", False),
          (2, 3, "xinc", False), (3, 4, "append", True), (4, 3, "release", True),
          (3, 2, "dec2", False), (2, 1, "xdec", False), (1, 0, "dealloc", False)]

# The headline is the user's line; then what wrote: the macro (Py_INCREF), or where inside
# CPython.
LOG = re.compile(r"^pyref watch (\d+): (-?\d+) -> (-?\d+)  (\S+):(\d+|\?) in ([^\s,]+)"
                 r"(?: \((?:inside CPython: (\S+) at (\S+):(\d+|\?)|(\w+))\))?(.*)$", re.M)


# The watched words: one ob_refcnt (64-bit to 3.13, 32-bit on 3.14+), or 3.13t's two
WORDS = r"(ob_refcnt|ob_ref_local, hardware watchpoint \d+ on ob_ref_shared)"


def _params():
    out = []
    for p in pyreftest.interpreters():
        for traced in (True, False):
            out.append(pytest.param((p.values[0], traced), marks=p.marks,
                                    id="%s-%s" % (p.id, "traced" if traced else "untraced")))
    return out


@pytest.fixture(scope="module", params=_params())
def built(request, tmp_path_factory):
    python, traced = request.param
    d = tmp_path_factory.mktemp("watch")
    pyreftest.build_ext(SRC, python, str(d), traced=traced)
    return python, str(d), traced


@pytest.fixture(scope="module", params=pyreftest.interpreters())
def untraced(request, tmp_path_factory):
    """An untraced build only, for what does not depend on the build."""
    d = tmp_path_factory.mktemp("watch-untraced")
    pyreftest.build_ext(SRC, request.param, str(d), traced=False)
    return request.param, str(d), False


def session(built, cmds, mode="plain"):
    """Runs the driver under gdb to watch_ext_ready(), then `cmds`."""
    python, moddir, _ = built
    out = pyreftest.gdb_batch(["set breakpoint pending on", "break watch_ext_ready", "run"] +
                              list(cmds), args=["--args", python, DRIVER, moddir, mode])
    assert "Python Exception" not in out and "Traceback" not in out, out
    return out


class Change:
    """One log line of `pyref watch`."""

    def __init__(self, m):
        self.watch, self.before, self.after = int(m.group(1)), int(m.group(2)), int(m.group(3))
        self.file, self.line, self.func = m.group(4), m.group(5), m.group(6)
        self.inside = (m.group(7), m.group(8), m.group(9)) if m.group(7) else None
        self.by = m.group(10)
        self.rest = m.group(11)

    def where(self):
        """'watch_ext.c:LINE in series', or for a change made inside CPython the
        extension's line that called it."""
        if self.inside:
            assert not self.inside[1].startswith("watch_ext")  # the interpreter's code
            return "CPython, called from %s:%s in %s" % (self.file, self.line, self.func)
        assert re.match(r"_?Py_X?(INC|DEC)REF$", self.by or ""), self.by  # what wrote
        return "%s:%s in %s" % (self.file, self.line, self.func)

    def ring(self):
        """What the line says about the ring: 'OP LINE' of the matching record, the note
        in parentheses, or None."""
        m = re.search(r"ring #\d+ (\w+) watch_ext\.c:(\d+) \(series\)", self.rest)
        if m:
            return "%s %s" % (m.group(1), m.group(2))
        m = re.search(r"\(((?:no |its )?ring record[^)]*|no matching ring record)\)",
                      self.rest)
        return m.group(1) if m else None


def changes(out, watch=None):
    got = [Change(m) for m in LOG.finditer(out)]
    return [c for c in got if watch is None or c.watch == watch]


def expected(steps, traced):
    """[(before, after, where, ring)] as Change gives them, for SERIES-like steps."""
    out = []
    for before, after, marker, in_cpython in steps:
        if in_cpython:
            where = "CPython, called from watch_ext.c:%d in series" % LINES[marker]
        else:
            where = "watch_ext.c:%d in series" % LINES[marker]
        ring = None
        if traced and in_cpython:
            ring = "no ring record: changed inside CPython"
        elif traced:
            op = "INCREF" if after > before else "DEALLOC" if after == 0 else "DECREF"
            ring = "%s %d" % (op, LINES[marker])
        out.append((before, after, where, ring))
    return out


def check_series(got, steps, traced):
    """The log lines `got` are exactly `steps`: counts, places and ring records."""
    assert [(c.before, c.after, c.where(), c.ring()) for c in got] == expected(steps, traced)


# ---------------------------------------------------------------------------------------
# The log
# ---------------------------------------------------------------------------------------
def test_log_is_the_series(built):
    python, moddir, traced = built
    out = session(built, ["pyref watch watch_ext_target", "continue"])
    assert re.search(r"^pyref watch 1: 0x[0-9a-f]+ \(list\), count 1; hardware watchpoint "
                     r"\d+ on %s; logs only, never stops%s$"
                     % (WORDS, "; ring records shown" if traced else ""), out, re.M), out
    got = changes(out)
    check_series(got, SERIES, traced)
    # `set pyref python-stack` is on by default: each line ends with the innermost frame
    for c in got:
        assert c.rest.endswith("[py watch_driver.py:%d in inner]" % PYLINES["py-inner"]), \
            c.rest
    assert "(count 0: the object is being deallocated)" in got[-1].rest
    assert re.search(r"^pyref watch 1 ends: (0x[0-9a-f]+ was deallocated and its memory is "
                     r"being reused|the process ended)$", out, re.M), out
    assert "exited normally" in out
    if not traced:
        assert "ring" not in "".join(c.rest for c in got)


# -O0 calls object.h's out-of-line copy of Py_INCREF (a frame of its own, untraced and
# traced); -O2 inlines everything: the user's line heads every change on each.
BUILDS = [pytest.param((ident, traced, opt), id="%s-%s%s" % (ident, opt, "-traced" * traced))
          for ident in ("3.11d", "3.12") for traced, opt in ((False, "-O0"), (True, "-O0"),
                                                             (True, "-O2"))]


@pytest.mark.parametrize("build", BUILDS)
def test_headline_is_the_users_line_on_every_build(build, tmp_path):
    ident, traced, opt = build
    python, why = pyreftest.interpreter(ident)
    if python is None:
        pytest.skip(why)
    pyreftest.build_ext(SRC, python, str(tmp_path), traced=traced, extra_cflags=[opt])
    out = session((python, str(tmp_path), traced), ["pyref watch watch_ext_target",
                                                     "continue"])
    check_series(changes(out), SERIES, traced)
    assert "object.h" not in "".join(c.file for c in changes(out))


def test_options_after_the_expression(untraced):
    out = session(untraced, ["pyref watch watch_ext_target --summary --until 3",
                             "pyref watch watch_ext_target --bogus", "continue"])
    assert re.search(r"^pyref watch 1: 0x[0-9a-f]+ \(list\), count 1; hardware watchpoint "
                     r"\d+ on %s; stops when the count is 3$" % WORDS, out, re.M), out
    assert "pyref watch: unknown option --bogus (options go before or after EXPR; see " \
           "\"help pyref watch\")\n" in out
    assert "pyref watch 1: stopped: the count reached 3\n" in out
    assert re.search(r"^pyref watch 1: 2 changes of 0x[0-9a-f]+ \(list\): 2 up, 0 down, "
                     r"count 1 -> 3$", out, re.M), out


def test_until_zero_stops_at_the_dealloc(built):
    python, moddir, traced = built
    out = session(built, ["pyref watch --until 0 watch_ext_target", "continue",
                          "echo @@stopped\\n", "bt 8", "pyref watch list",
                          "continue"])
    before, after = out.split("@@stopped\n", 1)
    check_series(changes(before), SERIES, traced)
    assert "pyref watch 1: stopped: the count reached 0\n" in before
    assert re.search(r"Old value = 1\nNew value = 0\n", before), before
    # the selected frame of the extension is at the DECREF that deallocates
    assert re.search(r"^#\d+ +series \(.*\) at \S*watch_ext\.c:%d$" % LINES["dealloc"],
                     after, re.M), after
    assert re.search(r"^1\s+0x[0-9a-f]+\s+list\s+0\s+9\s+\d+(,\d+)? \(hw\)\s+stops when the "
                     r"count is 0$", after, re.M), after
    assert changes(after) == []  # freed memory being reused is not a change of the object
    assert re.search(r"^pyref watch 1 ends: ", after, re.M), after
    assert "exited normally" in after


def test_until_and_below(built):
    """--until N stops the first time a change makes the count N; --below N when a change
    makes it less than N; a deleted watch logs nothing more."""
    python, moddir, traced = built
    out = session(built, ["pyref watch --until 3 watch_ext_target", "continue",
                          "pyref watch delete 1", "echo @@second\\n",
                          "pyref watch --below 2 --summary watch_ext_target", "continue",
                          "pyref watch delete", "continue"])
    first, second = out.split("@@second\n", 1)
    got = changes(first)
    assert [(c.before, c.after, c.where()) for c in got] == \
        [(1, 2, "watch_ext.c:%d in series" % LINES["inc1"]),
         (2, 3, "watch_ext.c:%d in series" % LINES["inc2"])]
    assert "pyref watch 1: stopped: the count reached 3\n" in first
    if traced:  # the shim writes an INCREF's record after the increment: not there yet
        assert got[1].ring().startswith("ring record not written yet")
    assert re.search(r"^pyref watch 1 deleted \(gdb watchpoint \d+(, \d+)?\)$", first, re.M)
    got = changes(second)
    assert all(c.watch == 2 for c in got)
    check_series(got, SERIES[2:8], traced)
    assert "pyref watch 2: stopped: the count dropped below 2\n" in second
    assert re.search(r"^pyref watch 2: 6 changes of 0x[0-9a-f]+ \(list\): 2 up, 4 down, "
                     r"count 3 -> 1$", second, re.M), second
    assert "  -1 in 1 change at watch_ext.c:%d in series" % LINES["release"] in second
    assert "exited normally" in second


def test_python_stack(untraced):
    out = session(untraced, ["pyref watch --python-stack watch_ext_target", "continue"])
    got = changes(out)
    assert len(got) == len(SERIES)
    frames = ['    File "%s", line %d, in %s' % (DRIVER, PYLINES[m], f) for m, f in
              (("py-inner", "inner"), ("py-outer", "outer"), ("py-module", "<module>"))]
    blocks = re.findall(r"^pyref watch 1: -?\d+ -> .*\n((?:    .*\n)*)", out, re.M)
    assert len(blocks) == len(SERIES)
    for block in blocks:
        assert block.splitlines() == frames
    for c in got:
        assert "[py " not in c.rest  # the full stack replaces the one-frame suffix


# ---------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------
def test_core_is_refused(untraced, tmp_path):
    python, moddir, _ = untraced
    core = str(tmp_path / "core")
    session(untraced, ["generate-core-file " + core])
    assert os.path.exists(core)
    out = pyreftest.gdb_batch(["pyref watch watch_ext_target", "pyref watch list"],
                              args=[python, core])
    assert "pyref: pyref watch needs a running process: this is a core file, whose memory " \
           "never changes (pyref history shows what the ring recorded)\n" in out, out
    assert "no pyref watches" in out
    assert "Python Exception" not in out and "atchpoint" not in out


def test_refusals(untraced):
    python, moddir, _ = untraced
    major, minor, _ = pyreftest.py_version(python)
    out = session(untraced, ["pyref watch 0",
                             "pyref watch --until 1 --below 3 watch_ext_target",
                             "pyref watch --below 0 watch_ext_target",
                             "pyref watch &_Py_NoneStruct", "pyref watch list",
                             "pyref watch delete 7", "pyref watch list extra"])
    assert "pyref: 0x0 is not an object: NULL pointer: nothing to watch\n" in out
    assert "pyref: --until 1 is below --below 3: the count drops below 3 before it can " \
           "reach 1; give one of them\n" in out
    assert "pyref: --below wants a count of 1 or more\n" in out
    if minor >= 12:
        assert re.search(r"^pyref: 0x[0-9a-f]+ \(NoneType\) is immortal: its reference count "
                         r"never changes \(immortal \((ob_refcnt|ob_ref_local) 0x[0-9a-f]+"
                         r"(; ob_flags 0x[0-9a-f]+ \([a-z, ]+\))?\)\), so there is "
                         r"nothing to watch$", out, re.M), out
        assert "no pyref watches" in out
    else:  # None is an ordinary object before 3.12
        assert re.search(r"^pyref watch 1: 0x[0-9a-f]+ \(NoneType\), count \d+;", out, re.M)
    assert "pyref: no pyref watch 7 (see pyref watch list)\n" in out
    assert "pyref: pyref watch list takes no arguments\n" in out


def test_without_a_process():
    out = pyreftest.gdb_batch(["pyref watch 0x1000", "pyref watch list"])
    assert "pyref: no process or core file\n" in out
    assert "no pyref watches" in out


def test_debug_registers_used_up(untraced):
    """x86 has 4 debug registers and gdb says so only when it resumes: pyref counts them
    first. gdb's own `watch x` takes one; three pyref watches fit, the fourth is refused
    unless --software; gdb's `delete N` of a pyref watchpoint ends that watch."""
    if pyreftest.interpreter_info(untraced[0]).get("free_threaded"):
        pytest.skip("3.13t: a watch takes two registers (ob_ref_local, ob_ref_shared); the "
                    "count of what fits is the same code, checked with one-word watches")
    out = session(untraced, [
        "watch watch_ext_target",
        "pyref watch watch_ext_target", "pyref watch watch_ext_target",
        "pyref watch watch_ext_target", "pyref watch watch_ext_target",
        "pyref watch --software watch_ext_target", "pyref watch list",
        "pyref watch delete 4", "delete 5", "pyref watch list", "echo @@run\\n", "continue",
        "continue"])
    setup, run = out.split("@@run\n", 1)  # (gdb's stderr, with pyref's errors, comes last)
    assert re.search(r"^pyref: all 4 x86 debug registers are in use \(4 held by hardware "
                     r"breakpoints/watchpoints 2, 3, 4, 5; this watch needs 1\): delete one "
                     r"\(pyref watch delete ID, or delete N\), or ask for a software "
                     r"watchpoint with --software \(slow: gdb single-steps the program\)$",
                     out, re.M), out
    assert re.search(r"^pyref watch 4: 0x[0-9a-f]+ \(list\), count 1; software watchpoint 6 on "
                     r"ob_refcnt;", setup, re.M), setup
    assert re.search(r"^4\s+0x[0-9a-f]+\s+list\s+1\s+0\s+6 \(sw\)", setup, re.M), setup
    assert "pyref watch 4 deleted (gdb watchpoint 6)" in setup
    assert "pyref watch 3 ends: its gdb watchpoint 5 was deleted\n" in setup
    listing = setup.rsplit("ID  object", 1)[1]
    assert re.findall(r"^(\d+)\s+0x", listing, re.M) == ["1", "2"]
    assert "Could not insert" not in out
    # watch_ext_target itself changes (gdb's watchpoint 2) when series() clears it
    assert "Hardware watchpoint 2: watch_ext_target" in run
    for w in (1, 2):
        check_series(changes(run, w), SERIES, False)


# ---------------------------------------------------------------------------------------
# Backwards
# ---------------------------------------------------------------------------------------
REVERSE = [(2, 3, "xinc"), (3, 2, "dec1"), (2, 3, "inc2"), (1, 2, "inc1")]


def test_reverse_under_record_full(built):
    """reverse-continue stops at the previous change. gdb's `record full` stands in for
    rr here (it needs a software watchpoint to see writes when going backwards)."""
    python, moddir, traced = built
    out = session(built, ["record full", "break watch_ext.c:%d" % LINES["append"],
                          "pyref watch --software watch_ext_target", "continue",
                          "echo @@reverse\\n"] + ["reverse-continue"] * 5 +
                  ["pyref watch delete", "kill"])
    forward, backward = out.split("@@reverse\n", 1)
    check_series(changes(forward), SERIES[:4], traced)
    got = changes(backward)
    assert [(c.before, c.after, c.where()) for c in got] == \
        [(b, a, "watch_ext.c:%d in series" % LINES[m]) for b, a, m in REVERSE]
    assert all("(reverse)" in c.rest for c in got)
    if traced:  # in the past, a DECREF's record is there; an INCREF's is not written yet
        assert [c.ring() for c in got] == [
            "its ring record is written just after the increment", "DECREF %d" % LINES["dec1"],
            "its ring record is written just after the increment",
            "its ring record is written just after the increment"]
    # the fifth goes back to where recording began: GDB 13 says so, GDB 18 reports the
    # breakpoint at which `record full` was started (the session's stop at watch_ext_ready)
    assert "No more reverse-execution history." in backward or re.search(
        r"^Breakpoint \d+, watch_ext_ready \(\)", backward.split(
            "pyref watch 1: 1 -> 2", 1)[-1], re.M), backward
    # (going on live from a point reached backwards is record full's business: it does not
    # undo the runtime's mmap of the thread's ring, so the test stops here)


_rr = []


def _rr_problem():
    """None when rr can record on this machine, else rr's own reason (probed once)."""
    if not _rr:
        if shutil.which("rr") is None:
            _rr.append("rr is not installed (apt-get install rr)")
        else:
            with tempfile.TemporaryDirectory() as d:
                p = subprocess.run(["rr", "record", "-o", os.path.join(d, "probe"), "true"],
                                   capture_output=True, text=True, timeout=120)
            lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
            fatal = [ln for ln in lines if "FATAL" in ln or "rror" in ln] or lines
            _rr.append(None if p.returncode == 0 else "rr cannot record here: %s"
                       % (fatal[-1] if fatal else "exit %d" % p.returncode))
    return _rr[0]


def test_reverse_under_rr(built, tmp_path):
    python, moddir, traced = built
    problem = _rr_problem()
    if problem:
        pytest.skip(problem)
    trace = str(tmp_path / "trace")
    subprocess.run(["rr", "record", "-o", trace, python, DRIVER, moddir, "plain"],
                   check=True, capture_output=True, timeout=300)
    cmds = ["set pagination off", "set breakpoint pending on", "source " + pyreftest.LOADER,
            "break watch_ext_ready", "continue", "pyref watch --until 0 watch_ext_target",
            "continue", "echo @@reverse\\n"] + ["reverse-continue"] * 4
    argv = ["rr", "replay", trace, "--", "-batch"]
    for c in cmds:
        argv += ["-ex", c]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert "Python Exception" not in out, out
    forward, backward = out.split("@@reverse\n", 1)
    check_series(changes(forward), SERIES, traced)
    got = changes(backward)
    assert [(c.before, c.after) for c in got] == [(1, 0), (2, 1), (3, 2), (4, 3)], out
    assert all("(reverse)" in c.rest for c in got)


def test_help():
    out = pyreftest.gdb_batch(["help pyref watch"])
    assert out.startswith("Log every change of an object's reference count, and stop on a "
                          "condition.\nUsage: pyref watch "), out
    assert "pyref watch list" in out and "pyref watch delete [ID]" in out
