"""`pyref pystack`: the Python stack read from memory, on every supported interpreter, live
and from a core, for the thread in the extension and for a thread parked in Event.wait
(not holding the GIL). The frames must be the driver's marker lines, the same as
libpython's py-bt prints (when the interpreter ships python-gdb.py) and the same as the
gdb-free walker in pylines reads from the core; a corrupted frame chain ends the walk with
a reason, never a traceback."""
import json
import os
import re

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "watch_ext.c")
DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "watch_driver.py")
PYLINES = {m: n for n, text in enumerate(open(DRIVER), 1)
           for m in re.findall(r"#\s*@([\w-]+)", text)}
HEAD = re.compile(r"^Python stack of thread (\d+) \(LWP (\d+)\), thread state (0x[0-9a-f]+), "
                  r"most recent call first:$")
FRAME = re.compile(r'^  File "(.*)", line (\d+|\?), in (\S+)$')


@pytest.fixture(scope="module", params=pyreftest.interpreters())
def built(request, tmp_path_factory):
    python = request.param
    d = tmp_path_factory.mktemp("pystack")
    pyreftest.build_ext(SRC, python, str(d), traced=False)
    return python, str(d), pyreftest.py_version(python)


def libpython_script(python):
    """The interpreter's python-gdb.py (py-bt), or None: Debian installs it under
    /usr/share/gdb/auto-load, a pyenv build leaves it next to the executable."""
    real = os.path.realpath(python)
    for path in ("/usr/share/gdb/auto-load%s-gdb.py" % real, real + "-gdb.py",
                 python + "-gdb.py"):
        if os.path.exists(path):
            return path
    return None


def session(built, cmds):
    python, moddir, _ = built
    out = pyreftest.gdb_batch(["set breakpoint pending on", "break watch_ext_ready", "run"] +
                              list(cmds), args=["--args", python, DRIVER, moddir, "deep"])
    assert "Python Exception" not in out, out
    return out


def stacks(text):
    """{thread number: [(file, line, func)]} of `pyref pystack` output."""
    out, cur = {}, None
    for line in text.splitlines():
        m = HEAD.match(line)
        if m:
            cur = out.setdefault(int(m.group(1)), [])
            continue
        m = FRAME.match(line)
        if m and cur is not None:
            cur.append((m.group(1), int(m.group(2)) if m.group(2) != "?" else None,
                        m.group(3)))
        elif not line.startswith("  "):
            cur = None
    return out


def expected_main(minor):
    def q(cls, name):  # co_qualname from 3.11, co_name before
        return "%s.%s" % (cls, name) if minor >= 11 else name
    return [(DRIVER, PYLINES["py-inner"], "inner"), (DRIVER, PYLINES["py-outer"], "outer"),
            (DRIVER, PYLINES["py-gen"], q("Deep", "gen")),
            (DRIVER, PYLINES["py-method"], q("Deep", "method")),
            (DRIVER, PYLINES["py-deep"], "deep"), (DRIVER, PYLINES["py-deep-call"], "<module>")]


def check_parked(frames, minor):
    """The parked thread: Condition.wait, Event.wait in threading.py, then parked(), then
    the threading machinery."""
    names = [f for _, _, f in frames]
    files = [os.path.basename(p) for p, _, _ in frames]
    assert files[:2] == ["threading.py"] * 2 and files[3:] == ["threading.py"] * 3, frames
    assert frames[2] == (DRIVER, PYLINES["py-parked"], "parked"), frames
    want = ["Condition.wait", "Event.wait", "parked", "Thread.run",
            "Thread._bootstrap_inner", "Thread._bootstrap"]
    if minor < 11:
        want = [w.rsplit(".", 1)[-1] for w in want]
    assert names == want, frames
    assert all(line for _, line, _ in frames), frames


def test_live_and_core_match_py_bt(built, tmp_path):
    python, moddir, (major, minor, _) = built
    script = libpython_script(python)
    core = str(tmp_path / "core")
    cmds = ["echo @@ours\\n", "pyref pystack --all", "echo @@json\\n",
            "pyref pystack --all --json", "echo @@end\\n"]
    if script:
        cmds = ["source " + script] + cmds
        for n in (1, 2):
            cmds += ["thread %d" % n, "echo @@py-bt %d\\n" % n, "py-bt"]
    cmds += ["echo @@done\\n", "generate-core-file " + core]
    out = session(built, cmds)
    ours = stacks(out.split("@@ours\n", 1)[1].split("@@json\n", 1)[0])
    assert sorted(ours) == [1, 2], out
    assert ours[1] == expected_main(minor)
    check_parked(ours[2], minor)
    live_json = json.loads(out.split("@@json\n", 1)[1].split("@@end\n", 1)[0])
    assert [[(f["file"], f["line"], f["function"]) for f in t["frames"]]
            for t in live_json["threads"]] == [ours[1], ours[2]]

    if script:  # py-bt prints co_name; file and line must be the same, frame for frame
        for n in (1, 2):
            text = out.split("@@py-bt %d\n" % n, 1)[1].split("@@", 1)[0]
            pybt = [(f, int(l), name) for f, l, name in
                    re.findall(r'^  File "(.*)", line (\d+), in (\S+)$', text, re.M)]
            assert [(f, l, func.rsplit(".", 1)[-1]) for f, l, func in ours[n]] == pybt, text
    else:
        print("no python-gdb.py for %s: py-bt comparison not made" % python)

    # the core: the same stacks, without a process
    out = pyreftest.gdb_batch(["pyref pystack --all --json", "pyref pystack"],
                              args=[python, core])
    assert "Python Exception" not in out, out
    core_json = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert core_json == live_json
    assert stacks(out)[1] == ours[1]

    # the gdb-free walker of pylines reads the same frames from the core
    from pyref import corefile, pylines
    c = corefile.Core(core)
    walked = pylines.python_stacks(c.read, c.symbol("_PyRuntime"), (major, minor))
    assert sorted([(f.filename, f.line, f.name) for f in t.frames] for t in walked) == \
        sorted([ours[1], ours[2]])


def test_limit_and_selected_thread(built):
    python, moddir, (major, minor, _) = built
    out = session(built, ["pyref pystack -n 2", "thread 2", "pyref pystack --limit 1",
                          "pyref pystack -n 0"])
    got = stacks(out)
    assert got[1] == expected_main(minor)[:2]
    assert got[2] == [("%s" % got[2][0][0], got[2][0][1], "Condition.wait" if minor >= 11
                       else "wait")]
    assert out.count("  ... (more frames: raise --limit)\n") == 2
    assert "pyref: --limit wants a positive number" in out


CORRUPT = r'''
python
import gdb
from pyref import pystack, target
lay = pystack._layouts()
ts = pystack.thread_state()
if lay.iframe is None:
    first = target.read_u64(ts + lay.tstate.offset("frame"))
    link = first + lay.pyframe.offset("f_back")
elif lay.cframe is not None:
    first = target.read_u64(target.read_u64(ts + lay.tstate.offset("cframe")) +
                            lay.cframe.offset("current_frame"))
    link = first + lay.iframe.offset("previous")
else:
    first = target.read_u64(ts + lay.tstate.offset("current_frame"))
    link = first + lay.iframe.offset("previous")
gdb.set_convenience_variable("first", first)
gdb.set_convenience_variable("link", link)
end
'''


def test_corrupt_chain_is_a_finding(built, tmp_path):
    """As libpython's tests corrupt the target on purpose: the innermost frame's link to
    its caller pointed at unmapped memory, then at itself."""
    script = tmp_path / "corrupt.gdb"
    script.write_text(CORRUPT)
    out = session(built, ["source %s" % script, "set var *(long *)$link = 0xdeadbeef",
                          "echo @@bad\\n", "pyref pystack", "set var *(long *)$link = $first",
                          "echo @@cycle\\n", "pyref pystack"])
    assert "Traceback" not in out, out
    bad = out.split("@@bad\n", 1)[1].split("@@cycle\n", 1)[0]
    cycle = out.split("@@cycle\n", 1)[1]
    assert [f for _, _, f in stacks(bad)[1]] == ["inner"]
    assert re.search(r"^  \(the walk stopped at unreadable memory: cannot read \d+ bytes at "
                     r"0xdeadbeef\)$", bad, re.M), bad
    assert [f for _, _, f in stacks(cycle)[1]] == ["inner"]
    assert re.search(r"^  \(frame 0x[0-9a-f]+ seen twice: the chain is a cycle\)$", cycle,
                     re.M), cycle


def test_without_a_process():
    out = pyreftest.gdb_batch(["pyref pystack"])
    assert "pyref: no process or core file\n" in out
