"""`pyref pystack`: the Python stack read from memory, on every supported interpreter, live
and from a core, for the thread in the extension and for a thread parked in Event.wait
(not holding the GIL). The frames must be the driver's marker lines, the same as
libpython's py-bt prints (when the interpreter ships python-gdb.py) and the same as the
gdb-free walker in pyframes reads from the core; a corrupted frame chain ends the walk with
a reason, never a traceback."""
import dataclasses
import json
import os
import re
import struct

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "watch_ext.c")
DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "watch_driver.py")
PYLINES = {m: n for n, text in enumerate(open(DRIVER), 1)
           for m in re.findall(r"#\s*@([\w-]+)", text)}
HEAD = re.compile(r"^Python stack of thread (\d+) \(LWP (\d+)\), thread state (0x[0-9a-f]+), "
                  r"most recent call first:$")
FRAME = re.compile(r'^  File "(.*)", line (\d+|\?), in (\S+)$')


@pytest.fixture(scope="module", params=pyreftest.every_version())
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


def session(built, cmds, gdb=None):
    python, moddir, _ = built
    out = pyreftest.gdb_batch(["set breakpoint pending on", "break watch_ext_ready", "run"] +
                              list(cmds), args=["--args", python, DRIVER, moddir, "deep"],
                              gdb=gdb)
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
    out = session(built, cmds, gdb=pyreftest.gcore_gdb(python))
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

    # the gdb-free walker of pyframes reads the same frames from the core, where it has
    # the version's fixed offsets (3.10 to 3.13, with the GIL)
    from pyref.reader import corefile, pyframes
    if pyframes.fixed_walk_layout((major, minor)) is None or \
            pyreftest.interpreter_info(python).get("free_threaded"):
        return
    c = corefile.Core(core)
    walked = pyframes.python_stacks(c.read, c.symbol("_PyRuntime"), (major, minor))
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
from pyref.inferior import layout, pythreads, target
walk = layout.layouts().walk
ts = pythreads.thread_state()
first = target.read_u64(ts + walk.tstate_frame)
if walk.cframe_current_frame is not None:
    first = target.read_u64(first + walk.cframe_current_frame)
link = first + walk.frame_previous
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


# ---------------------------------------------------------------------------------------
# One walk, two sets of offsets: pyframes.FrameWalk runs both `pyref pystack` (DWARF
# offsets, gdb reads) and pyframes.python_stacks (fixed offsets, any reader)
# ---------------------------------------------------------------------------------------
DUMP_WALK_LAYOUT = ("python import dataclasses, json; from pyref.inferior import layout; "
                    "print('@@walk ' + json.dumps(dataclasses.asdict(layout.layouts().walk)))")


def test_fixed_offsets_are_the_dwarf_ones(built):
    """Every offset the gdb-free walk reads is the one pystack reads from DWARF, so the two
    front ends of the one walk read the same bytes."""
    major, minor, _ = built[2]
    from pyref.reader import pyframes
    walk = pyframes.fixed_walk_layout((major, minor))
    if walk is None or pyreftest.interpreter_info(built[0]).get("free_threaded"):
        pytest.skip("no fixed offsets for %d.%d%s: its walk reads DWARF only" % (
            major, minor, "t" if walk else ""))
    out = session(built, [DUMP_WALK_LAYOUT])
    dwarf = json.loads(out.split("@@walk ", 1)[1].splitlines()[0])
    fixed = json.loads(json.dumps(dataclasses.asdict(walk)))
    assert dwarf.pop("code_type"), "PyCode_Type not found: code objects are not type-checked"
    assert fixed.pop("code_type") is None
    assert dwarf == fixed


class Memory:
    """A fake target for the walk: blocks of bytes at addresses, read as a core would be
    (MemoryError for anything outside them)."""

    def __init__(self):
        self.blocks, self.next = {}, 0x10000

    def alloc(self, size):
        addr = self.next
        self.blocks[addr] = bytearray(size)
        self.next += (size + 0xFFF) & ~0xFFF
        return addr

    def put(self, addr, off, fmt, value):
        base = max(b for b in self.blocks if b <= addr)
        struct.pack_into(fmt, self.blocks[base], addr - base + off, value)

    def read(self, addr, size):
        for base, data in self.blocks.items():
            if base <= addr and addr + size <= base + len(data):
                return bytes(data[addr - base:addr - base + size])
        raise MemoryError("cannot read %d bytes at %#x" % (size, addr))


def fake_str(mem, lay, text):
    """A compact ASCII str object."""
    addr = mem.alloc(lay.str_ascii_data + len(text) + 1)
    mem.put(addr, 16, "<q", len(text))
    mem.put(addr, lay.str_state, "<I", (1 << 2) | (1 << 5) | (1 << 6))  # kind 1, compact, ascii
    mem.blocks[addr][lay.str_ascii_data:lay.str_ascii_data + len(text)] = text.encode()
    return addr


def fake_code(mem, lay, name, firstlineno, table, firsttraceable=0):
    addr = mem.alloc(lay.co_code_adaptive + 64 if lay.co_code_adaptive else 256)
    table_obj = mem.alloc(lay.bytes_sval + len(table) + 1)
    mem.put(table_obj, lay.var_size, "<q", len(table))
    mem.blocks[table_obj][lay.bytes_sval:lay.bytes_sval + len(table)] = table
    mem.put(addr, lay.co_filename, "<Q", fake_str(mem, lay, "fake.py"))
    mem.put(addr, lay.co_qualname if lay.co_qualname is not None else lay.co_name, "<Q",
            fake_str(mem, lay, name))
    mem.put(addr, lay.co_firstlineno, "<i", firstlineno)
    mem.put(addr, lay.co_linetable, "<Q", table_obj)
    if lay.co_firsttraceable is not None:
        mem.put(addr, lay.co_firsttraceable, "<i", firsttraceable)
    return addr


def fake_thread(mem, walk):
    """_PyRuntime -> one interpreter -> one thread state; returns (runtime, tstate, the
    tstate's frame-pointer slot: the address the innermost frame is stored at)."""
    runtime, interp, ts = mem.alloc(8192), mem.alloc(8192), mem.alloc(4096)
    mem.put(runtime, walk.runtime_interpreters_head, "<Q", interp)
    mem.put(interp, walk.interp_threads_head, "<Q", ts)
    mem.put(ts, walk.tstate_thread_id, "<Q", 0x7f00)
    slot = ts + walk.tstate_frame
    if walk.cframe_current_frame is not None:
        cframe = mem.alloc(64)
        mem.put(ts, walk.tstate_frame, "<Q", cframe)
        slot = cframe + walk.cframe_current_frame
    return runtime, ts, slot


def link(mem, walk, frames, slot):
    mem.put(slot, 0, "<Q", frames[0])
    for f, nxt in zip(frames, frames[1:]):
        mem.put(f, walk.frame_previous, "<Q", nxt)


# 3.11+ location table: one entry, "no column" form (code 13), 4 code units, line + 1
LOCATIONS = bytes([0x80 | 13 << 3 | 3, 2])


def interpreter_frame(mem, walk, code, units, owner=0):
    f = mem.alloc(128)
    mem.put(f, walk.frame_code, "<Q", code)
    start = code + walk.code.co_code_adaptive
    mem.put(f, walk.frame_instr, "<Q", (start + 2 * units) & (1 << 64) - 1)
    mem.put(f, walk.frame_owner, "<B", owner)
    return f


def test_one_walk_skips_bounds_and_ends_on_cycles():
    """pyframes.FrameWalk on a 3.12 chain: a shim frame (FRAME_OWNED_BY_CSTACK) and an
    incomplete frame are passed over, a generator's frame before its first traceable
    instruction is not (CPython's _PyFrame_IsIncomplete), `limit` truncates, a cycle and an
    unreadable link end the walk with the frames read so far."""
    from pyref.reader import pyframes
    walk = pyframes.fixed_walk_layout((3, 12))
    mem = Memory()
    runtime, ts, slot = fake_thread(mem, walk)
    code = fake_code(mem, walk.code, "f", 10, LOCATIONS, firsttraceable=1)
    running = interpreter_frame(mem, walk, code, 2)
    shim = interpreter_frame(mem, walk, code, 0, owner=pyframes.FRAME_OWNED_BY_CSTACK)
    fresh = interpreter_frame(mem, walk, code, -1)
    gen = interpreter_frame(mem, walk, code, 0, owner=pyframes.FRAME_OWNED_BY_GENERATOR)
    link(mem, walk, [running, shim, fresh, gen, running], slot)

    w = pyframes.FrameWalk(mem.read, walk, lambda a: pyframes.read_code(mem.read, a, (3, 12)))
    got = [(f.code.name, f.offset, f.line) for f in w.frames(ts, 10)]
    assert got == [("f", 4, 11), ("f", 0, 11)]
    assert (w.skipped, w.truncated) == (2, False)
    assert w.problem == "frame 0x%x seen twice: the chain is a cycle" % running

    w = pyframes.FrameWalk(mem.read, walk, lambda a: pyframes.read_code(mem.read, a, (3, 12)))
    assert len(list(w.frames(ts, 1))) == 1 and w.truncated and w.problem is None

    # the gdb-free front end: same frames, the cycle marks the thread truncated
    [thread] = pyframes.python_stacks(mem.read, runtime, (3, 12))
    assert (thread.tstate, thread.thread_id, thread.truncated) == (ts, 0x7f00, True)
    assert [(f.code, f.offset, f.filename, f.name, f.line) for f in thread.frames] == \
        [(code, 4, "fake.py", "f", 11), (code, 0, "fake.py", "f", 11)]

    mem.put(gen, walk.frame_previous, "<Q", 0xdead0000)  # unreadable: frames so far kept
    w = pyframes.FrameWalk(mem.read, walk, lambda a: pyframes.read_code(mem.read, a, (3, 12)))
    frames = []
    with pytest.raises(MemoryError):
        for f in w.frames(ts, 10):
            frames.append(f)
    assert len(frames) == 2
    [thread] = pyframes.python_stacks(mem.read, runtime, (3, 12))
    assert len(thread.frames) == 2 and thread.truncated


def test_one_walk_bounds_hops_through_skipped_frames():
    """A chain of shim frames only (no cycle, nothing emitted) still ends: at most
    2 * limit + 64 frames are visited."""
    from pyref.reader import pyframes
    walk = pyframes.fixed_walk_layout((3, 13))
    mem = Memory()
    _, ts, slot = fake_thread(mem, walk)
    code = fake_code(mem, walk.code, "f", 1, LOCATIONS)
    shims = [interpreter_frame(mem, walk, code, 0, owner=pyframes.FRAME_OWNED_BY_CSTACK)
             for _ in range(200)]
    link(mem, walk, shims, slot)
    w = pyframes.FrameWalk(mem.read, walk, lambda a: pyframes.read_code(mem.read, a, (3, 13)))
    assert list(w.frames(ts, 10)) == []
    assert w.truncated and w.skipped == 2 * 10 + 64


def test_one_walk_310_frame_objects():
    """3.10's PyFrameObject chain: the line is f_lineno while a trace function runs (as
    PyFrame_GetLineNumber), else the line table at f_lasti; a frame whose code is not a code
    object is passed over."""
    from pyref.reader import pyframes
    walk = pyframes.fixed_walk_layout((3, 10))
    mem = Memory()
    runtime, ts, slot = fake_thread(mem, walk)
    code = fake_code(mem, walk.code, "g", 20, bytes([8, 1, 8, 2]))  # bytes 0-7: 21, 8-15: 23
    frames = []
    for lasti, lineno in ((5, 0), (1, 0), (1, 99)):
        f = mem.alloc(128)
        mem.put(f, walk.frame_code, "<Q", code)
        mem.put(f, walk.frame_instr, "<i", lasti)
        mem.put(f, walk.frame_lineno, "<i", lineno)
        frames.append(f)
    bad = mem.alloc(128)
    mem.put(bad, walk.frame_code, "<Q", mem.alloc(256))  # zeroes: no file name, no table
    link(mem, walk, frames[:2] + [bad] + frames[2:], slot)
    [thread] = pyframes.python_stacks(mem.read, runtime, (3, 10))
    assert [(f.name, f.offset, f.line) for f in thread.frames] == \
        [("g", 10, 23), ("g", 2, 21), ("g", 2, 99)]
    assert not thread.truncated
