"""The bad-input matrix: every pyref command x every bad input x every
setting gives one clear `pyref: ...` line or a bounded answer -- never "Python Exception",
never a Python traceback, never a hang.

Inputs (tests/gdb_targets/bad_input_target.py builds them in a python3.11d process that
also ran the traced seedext, so a ring exists): NULL, 0xdeadbeef, a freed object (the debug
allocator's 0xDD poison), a non-object pointer (a ctypes malloc'd buffer), a pointer into
a bytes object's data, a 10**6-element list, a self-referencing list and dict.

Settings: the target stopped live at its SIGABRT; its kernel core; gdb with no process at
all; a core of a plain interpreter (no pyref ring); the 3.11d core opened with the wrong
interpreter binary (pyenv 3.12); and >= 20 truncated copies of a traced core, cut in the
ELF header, the program headers, the notes, at and inside PT_LOADs and exactly at the
ring's segment.

One gdb session per setting runs every command (each after an `echo @@CELL ...` marker,
stdout and stderr on one pipe so gdb's error lines stay in order), the session is shared
by the pytest-xdist workers through a lock file, and each cell is its own test.
"""
import fcntl
import glob
import json
import os
import re
import struct
import subprocess

import pytest

import pyreftest

PYTHON = "/usr/bin/python3.11d"
TARGET = os.path.join(pyreftest.ROOT, "tests", "gdb_targets", "bad_input_target.py")
SEED_SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "seedext.c")
SEED_DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "seed_driver.py")
WRONG_PYTHON = sorted(glob.glob("/root/.pyenv/versions/3.12.*/bin/python3.12"))
SESSION_TIMEOUT = 180
MAX_LINES = 200

INPUTS = {
    "null": "0",
    "deadbeef": "0xdeadbeef",
    "freed": "$b_freed",
    "nonobj": "$b_nonobj",
    "bytes_data": "$b_bytes_data",
    "huge_list": "$b_huge",
    "self_list": "$b_self_list",
    "self_dict": "$b_self_dict",
}
PER_INPUT = {
    "show": "pyref show %s",
    "show_json": "pyref show --json %s",
    "history": "pyref history %s",
    "history_json": "pyref history --json %s",
    "why": "pyref why %s",
    "owners": "pyref owners %s",
    "owners_depth": "pyref owners --depth 3 %s",
    "watch": "pyref watch %s",
    "refcnt": "print $pyref_refcnt(%s)",
    "type": "print $pyref_type(%s)",
    "state": "print $pyref_state(%s)",
}
NO_INPUT = {
    "ring": "pyref ring",
    "ring_json": "pyref ring --json",
    "why_noarg": "pyref why",
    "leaks": "pyref leaks",
    "leaks_json": "pyref leaks --json",
    "pystack": "pyref pystack",
    "pystack_all": "pyref pystack --all",
    "watch_list": "pyref watch list",
    "watch_delete": "pyref watch delete",
    "explain_noarg": "pyref explain",
    "explain_unknown": "pyref explain NoSuchFunction",
    "explain_empty_quotes": "pyref explain ''",
    "explain_format": "pyref explain %s%n%x",
    "explain_long": "pyref explain " + "Py" * 2000,
    "explain_unicode": "pyref explain Py\u00e9\U0001F600",
    "explain_expr": "pyref explain $b_huge",
    "explain_two": "pyref explain Py_INCREF Py_DECREF",
}
# Bad arguments: each must be one `pyref:` line (BAD_ARGS_REFUSED) or a bounded answer,
# never an internal error; an expression that writes the target is always refused.
BAD_ARGS = {
    "args/leaks_max_search_huge": "pyref leaks --max-search 99999999999999999999",
    "args/leaks_top_huge": "pyref leaks --top 99999999999999999999",
    "args/leaks_top_negative": "pyref leaks --top -5",
    "args/leaks_top_text": "pyref leaks --top many",
    "args/leaks_top_float": "pyref leaks --top 1.5",
    "args/history_n_huge": "pyref history -n 99999999999999999999 $b_self_list",
    "args/history_n_zero": "pyref history -n 0 $b_self_list",
    "args/history_no_expr": "pyref history",
    "args/pystack_limit_huge": "pyref pystack -n 99999999999999999999",
    "args/pystack_limit_negative": "pyref pystack -n -1",
    "args/owners_depth_huge": "pyref owners --depth 99999999999999999999 $b_self_list",
    "args/owners_dot_missing_dir": "pyref owners --dot /nonexistent/dir/g.dot $b_self_list",
    "args/owners_dot_directory": "pyref owners --dot /tmp $b_self_list",
    "args/owners_dot_dev_full": "pyref owners --dot /dev/full $b_self_list",
    "args/watch_until_huge": "pyref watch --until 100000000000000000000000 $b_self_list",
    "args/watch_until_power": "pyref watch --until 10^23 $b_self_list",
    "args/watch_below_huge": "pyref watch --below -100000000000000000000000 $b_self_list",
    "args/watch_depth_huge": "pyref watch --depth 99999999999999999999 $b_self_list",
    "args/ring_extra": "pyref ring extra words",
    "args/unknown_option": "pyref leaks --frobnicate",
    "args/show_assign": "pyref show (((PyObject*)$b_self_list)->ob_refcnt = 77, $b_self_list)",
    "args/show_increment": "pyref show ((PyObject*)$b_self_list)->ob_refcnt++",
    "args/history_compound": "pyref history ((PyObject*)$b_self_list)->ob_refcnt += 1",
    "args/why_decrement": "pyref why ((PyObject*)$b_self_list)->ob_refcnt--",
    "args/owners_assign": "pyref owners $b_self_list = 0",
    "args/watch_assign": "pyref watch ((PyObject*)$b_self_list)->ob_refcnt = 1",
}
# refused in every setting: a bad number, an unwritable file, a write to the target
BAD_ARGS_REFUSED = {k for k in BAD_ARGS if not k.endswith(("_n_zero", "_no_expr"))}
WRITES = {k for k in BAD_ARGS if k.split("_")[-1] in ("assign", "increment", "compound",
                                                     "decrement")}
SETTINGS = ("live", "core", "noproc", "noring", "wrongpy")
# a smaller subset on one pyenv (release) interpreter, from a core, PYTHONMALLOC=debug
PYENV_PYTHON = pyreftest._pyenv(12)
PYENV_COMMANDS = ("show", "history", "why", "owners", "refcnt", "state")
PYENV_NO_INPUT = ("ring", "why_noarg", "leaks", "pystack", "watch_list")

# cells that really fail: (setting or "*", cell) -> reason. Kept strict so a fix shows.
KNOWN_BUGS = {}


def cells():
    out = {}
    for cmd, fmt in PER_INPUT.items():
        for inp, expr in INPUTS.items():
            out["%s/%s" % (cmd, inp)] = fmt % expr
    out.update(NO_INPUT)
    out.update(BAD_ARGS)
    return out


CELLS = cells()


def pyenv_cells():
    return {k: v for k, v in CELLS.items()
            if k.split("/")[0] in PYENV_COMMANDS or k in PYENV_NO_INPUT}


# ---------------------------------------------------------------------------------------
# Sessions shared between xdist workers
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """A directory every xdist worker of this run sees (the parent of the per-worker
    basetemp under xdist)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    d = os.path.join(str(root), "bad_input_shared")
    os.makedirs(d, exist_ok=True)
    return d


def once(shared, key, fn):
    """fn() -> JSON-able, computed by one worker, read by the others."""
    path = os.path.join(shared, key + ".json")
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        value = fn()
        with open(path + ".tmp", "w") as f:
            json.dump(value, f)
        os.rename(path + ".tmp", path)
        return value


def run_gdb(cells_, args=(), pre=(), cwd=None, timeout=SESSION_TIMEOUT):
    """One gdb session running every cell; returns {cell: output} plus "__all__"."""
    cmds = list(pre)
    for name, c in cells_.items():
        cmds += ["echo \\n@@CELL %s\\n" % name, c]
    cmd = pyreftest.gdb_command(cmds + ["echo \\n@@CELL __end__\\n"], args)
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, cwd=cwd, errors="replace", text=True)
        text = p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        text = out + "\n@@TIMEOUT after %ds\n" % timeout
    res = {"__all__": text}
    parts = re.split(r"^@@CELL (\S+)\n", text, flags=re.M)
    for i in range(1, len(parts) - 1, 2):
        res[parts[i]] = parts[i + 1]
    return res


def _built(shared):
    def make():
        d = os.path.join(shared, "target")
        os.makedirs(d, exist_ok=True)
        pyreftest.build_ext(SEED_SRC, PYTHON, d)
        core, _ = pyreftest.run_to_core(PYTHON, [TARGET, d, d], cwd=d)
        dest = os.path.join(d, "target.core")
        os.rename(core, dest)
        return {"dir": d, "core": dest}
    return once(shared, "built", make)


def session(shared, setting):
    def make():
        b = _built(shared)
        d = b["dir"]
        ids = ["source " + os.path.join(d, "ids.gdb")]
        if setting == "live":
            live = os.path.join(shared, "live")
            os.makedirs(live, exist_ok=True)
            return run_gdb(CELLS, pre=["run"] + ["source " + os.path.join(live, "ids.gdb")],
                           args=["--args", PYTHON, TARGET, d, live], cwd=live)
        if setting == "core":
            return run_gdb(CELLS, pre=ids, args=[PYTHON, b["core"]], cwd=d)
        if setting == "noproc":
            return run_gdb(CELLS, pre=ids, cwd=d)
        if setting == "noring":
            nr = os.path.join(shared, "noring")
            os.makedirs(nr, exist_ok=True)
            core, _ = pyreftest.run_to_core(PYTHON, ["-c", "import os; os.abort()"], cwd=nr)
            return run_gdb(CELLS, pre=ids, args=[PYTHON, core], cwd=nr)
        if setting == "core-pyenv":
            pd = os.path.join(shared, "pyenv")
            os.makedirs(pd, exist_ok=True)
            pyreftest.build_ext(SEED_SRC, PYENV_PYTHON, pd)
            core, _ = pyreftest.run_to_core(PYENV_PYTHON, [TARGET, pd, pd], cwd=pd,
                                            env={"PYTHONMALLOC": "debug"})
            return run_gdb(pyenv_cells(), pre=["source " + os.path.join(pd, "ids.gdb")],
                           args=[PYENV_PYTHON, core], cwd=pd)
        if setting == "wrongpy":
            return run_gdb(CELLS, pre=ids, args=[WRONG_PYTHON[-1], b["core"]], cwd=d)
        raise AssertionError(setting)
    return once(shared, "session-" + setting, make)


# ---------------------------------------------------------------------------------------
# The per-cell verdict
# ---------------------------------------------------------------------------------------
GDB_NOISE = re.compile(r"^(warning: |\s*$|BFD: |\[New |\[Thread |\[Inferior |Using host "
                       r"|Downloading |Program |Core was generated|#0 |\d+\s)")


def check_cell(res, cell):
    """Asserts: the session ended, the cell has output, no Python Exception / Traceback /
    internal error, every `pyref:` error is a single line, output bounded."""
    text = res["__all__"]
    assert "@@TIMEOUT" not in text, "gdb session hung:\n" + text[-3000:]
    assert "__end__" in res, "gdb session did not reach the end:\n" + text[-3000:]
    assert cell in res, "cell %s missing from the session output" % cell
    out = res[cell]
    for bad in ("Python Exception", "Traceback", "internal error"):
        assert bad not in out, "%s:\n%s" % (bad, out[:3000])
    lines = [l for l in out.splitlines() if not GDB_NOISE.match(l)]
    assert lines, "no output at all:\n" + out
    assert len(out.splitlines()) < MAX_LINES, "unbounded: %d lines" % len(out.splitlines())
    assert len(out) < 40000, "unbounded: %d chars" % len(out)
    return lines


def is_refusal(lines):
    """One line from pyref: its error ("pyref: ...") or its parser's ("pyref CMD: ...")."""
    return len(lines) == 1 and re.match(r"^pyref( \w+)?: ", lines[0]) is not None


def _params(settings):
    out = []
    for s in settings:
        for c in (pyenv_cells() if s == "core-pyenv" else CELLS):
            marks = []
            if s == "core-pyenv" and not PYENV_PYTHON:
                marks.append(pytest.mark.skip(reason="no pyenv 3.12 interpreter"))
            if s == "wrongpy" and not WRONG_PYTHON:
                marks.append(pytest.mark.skip(reason="no pyenv 3.12 interpreter"))
            for key in ((s, c), ("*", c)):
                if key in KNOWN_BUGS:
                    marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[key]))
            out.append(pytest.param(s, c, id="%s-%s" % (s, c), marks=marks))
    return out


@pytest.mark.parametrize("setting,cell", _params(SETTINGS + ("core-pyenv",)))
def test_cell(shared, setting, cell):
    res = session(shared, setting)
    lines = check_cell(res, cell)
    cmd = cell.split("/")[0]
    inp = cell.split("/")[1] if "/" in cell else None
    if setting != "live" and cmd == "watch":
        assert is_refusal(lines), "a watch outside a live process must be refused: %s" % lines
    if setting == "live" and cmd == "watch" and inp in ("null", "deadbeef", "freed"):
        assert is_refusal(lines), "a watch of %s must be refused: %s" % (inp, lines)
    if setting == "noproc" and cmd not in ("watch_list", "watch_delete") \
            and not cmd.startswith("explain"):
        assert is_refusal(lines), lines
    if inp in ("null", "deadbeef") and cmd in ("show", "show_json", "refcnt", "type"):
        assert is_refusal(lines) or "NULL" in "\n".join(lines), lines
    if cell in BAD_ARGS_REFUSED:
        # the refusal is the last line (owners --dot /dev/full writes its report first)
        refusal = re.compile(r"^pyref( \w+)?: ")
        assert refusal.match(lines[-1]) and len(
            [l for l in lines if refusal.match(l)]) == 1, lines
        if cell in WRITES and setting in ("live", "core"):
            assert "would write the target" in lines[-1], lines


def test_live_watch_cleanup(shared):
    """Every live watch the matrix set was deleted by `pyref watch delete` (last cell)."""
    res = session(shared, "live")
    assert "watch_delete" in res


# ---------------------------------------------------------------------------------------
# Truncated cores
# ---------------------------------------------------------------------------------------
TRUNC_CELLS = {
    "ring": "pyref ring",
    "history": "pyref history $t_arg",
    "why": "pyref why",
    "why_arg": "pyref why $t_arg",
    "show": "pyref show $t_arg",
    "show_none": "pyref show $t_none",
    "leaks": "pyref leaks",
}
N_TRUNC = 20


def _phdrs(path):
    with open(path, "rb") as f:
        eh = f.read(64)
        phoff, = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(phoff)
        raw = f.read(phentsize * phnum)
    out = []
    for i in range(phnum):
        p_type, _flags, off, vaddr, _pa, filesz, memsz, _al = struct.unpack_from(
            "<IIQQQQQQ", raw, i * phentsize)
        out.append((p_type, off, vaddr, filesz, memsz))
    return phoff, phentsize * phnum, out


def _offsets(core, ring_addr):
    size = os.path.getsize(core)
    phoff, phsize, ph = _phdrs(core)
    loads = [p for p in ph if p[0] == 1 and p[3] > 0]
    notes = [p for p in ph if p[0] == 4]
    offs = {"elf_header": 20, "phdrs": phoff + phsize // 2}
    if notes:
        offs["notes_start"] = notes[0][1] + 8
        offs["notes_mid"] = notes[0][1] + notes[0][3] // 2
    ring_seg = [p for p in loads if p[2] <= ring_addr < p[2] + p[4]]
    if ring_seg:
        p = ring_seg[0]
        offs["ring_segment_start"] = p[1]
        offs["ring_header"] = p[1] + (ring_addr - p[2]) + 16
        offs["ring_segment_mid"] = p[1] + p[3] // 2
        offs["ring_segment_end"] = p[1] + p[3] - 4096
    picks = [0, 2, len(loads) // 2, len(loads) - 1]
    for i in sorted(set(picks)):
        p = loads[i]
        offs["load%d_start" % i] = p[1]
        offs["load%d_mid" % i] = p[1] + p[3] // 2 + 13
    for frac in (0.33, 0.66, 0.9):
        offs["file_%d%%" % int(frac * 100)] = int(size * frac)
    offs["last_byte"] = size - 1
    return {k: v for k, v in offs.items() if 0 < v < size}


def _trunc_cores(shared):
    def make():
        d = os.path.join(shared, "trunc")
        os.makedirs(d, exist_ok=True)
        pyreftest.build_ext(SEED_SRC, PYTHON, d)
        core, p = pyreftest.run_to_core(PYTHON, [SEED_DRIVER, d, "leak", "3"], cwd=d)
        words = p.stdout.split()
        ids = dict(zip(words[0::2], words[1::2]))
        from pyref.reader import corefile
        c = corefile.Core(core)
        ring_addr = int.from_bytes(c.read(c.symbol("pyref_ring"), 8), "little")
        offs = _offsets(core, ring_addr)
        out = {}
        with open(core, "rb") as f:
            for name, off in sorted(offs.items(), key=lambda kv: kv[1]):
                path = os.path.join(d, "core.cut-%s" % name)
                f.seek(0)
                with open(path, "wb") as g:
                    left = off
                    while left:
                        chunk = f.read(min(left, 1 << 22))
                        g.write(chunk)
                        left -= len(chunk)
                out[name] = {"path": path, "offset": off}
        return {"dir": d, "cuts": out, "none": int(ids["none"]), "arg": int(ids["arg"]),
                "size": os.path.getsize(core)}
    return once(shared, "trunc", make)


def test_truncated_offsets_enough(shared):
    t = _trunc_cores(shared)
    assert len(t["cuts"]) >= 20, sorted(t["cuts"])
    for must in ("elf_header", "phdrs", "notes_mid", "ring_segment_start", "ring_header"):
        assert must in t["cuts"], sorted(t["cuts"])


def _trunc_index():
    # a stable list of test ids without building anything at collection time: one test per
    # position in the sorted cut list (the names are checked by test_truncated_offsets_enough)
    return list(range(N_TRUNC))


@pytest.mark.parametrize("index", _trunc_index())
def test_truncated_core(shared, index):
    t = _trunc_cores(shared)
    cuts = sorted(t["cuts"].items(), key=lambda kv: kv[1]["offset"])
    if index >= len(cuts):
        pytest.skip("only %d distinct cut offsets" % len(cuts))
    name, cut = cuts[index]
    pre = ["set $t_arg = %d" % t["arg"], "set $t_none = %d" % t["none"]]
    res = run_gdb(TRUNC_CELLS, pre=pre, args=[PYTHON, cut["path"]], cwd=t["dir"],
                  timeout=120)
    problems = []
    for cell in TRUNC_CELLS:
        try:
            check_cell(res, cell)
        except AssertionError as e:
            problems.append("%s: %s" % (cell, str(e)[:1500]))
    assert not problems, "core cut at %s (offset %d of %d):\n%s" % (
        name, cut["offset"], t["size"], "\n".join(problems))


# ---------------------------------------------------------------------------------------
# The wrong interpreter binary, and an interpreter without debug info
# ---------------------------------------------------------------------------------------
RELEASE = "/usr/bin/python3.11"  # Debian's: its debug info is separate (python3.11-dbg)
ABORT = ["-c", "import os; os.abort()"]
OBJECT_CMDS = ["pyref pystack", "pyref show 0x1000", "print $pyref_refcnt(0x1000)"]


@pytest.fixture(scope="module")
def abort_core(tmp_path_factory):
    """A core of python3.11d, dead of os.abort()."""
    d = str(tmp_path_factory.mktemp("abort"))
    return pyreftest.run_to_core(PYTHON, ABORT, cwd=d)[0]


def pyref_lines(out):
    assert "Python Exception" not in out and "Traceback" not in out, out
    return [l for l in out.splitlines() if l.startswith("pyref: ")]


@pytest.mark.parametrize("wrong", [
    pytest.param(RELEASE, id="3.11-release"),
    pytest.param(WRONG_PYTHON[-1] if WRONG_PYTHON else "missing", id="3.12", marks=[] if
                 WRONG_PYTHON else pytest.mark.skip(reason="no pyenv 3.12 interpreter"))])
def test_wrong_interpreter_binary_is_named(abort_core, wrong):
    """gdb given another interpreter than the one that made the core: every command that
    reads Python objects says which one to load, not "no debug info" (3.12: no DWARF for
    this core at all) nor an answer read through the wrong symbols (3.11 release: DWARF,
    but of another binary)."""
    if not os.path.exists(wrong):
        pytest.skip("%s not installed" % wrong)
    out = pyreftest.gdb_batch(OBJECT_CMDS, args=[wrong, abort_core])
    want = ("this core was made by %s but gdb loaded %s; run gdb %s %s"
            % (PYTHON, wrong, PYTHON, abort_core))
    assert pyref_lines(out) == ["pyref: " + want, "pyref: " + want,
                                "pyref: $pyref_refcnt: " + want], out
    assert "Python stack of thread" not in out


def test_wrong_interpreter_binary_is_named_before_no_ring(abort_core):
    """A ring is found through the executable's symbols too: with the wrong binary, `pyref
    ring` and `pyref history` name it instead of answering "no pyref ring"."""
    if not os.path.exists(RELEASE):
        pytest.skip("%s not installed" % RELEASE)
    out = pyreftest.gdb_batch(["pyref ring", "pyref history 0x1000"],
                              args=[RELEASE, abort_core])
    want = ("pyref: this core was made by %s but gdb loaded %s; run gdb %s %s"
            % (PYTHON, RELEASE, PYTHON, abort_core))
    assert pyref_lines(out) == [want, want], out


def test_no_executable_is_named(abort_core):
    out = pyreftest.gdb_batch(OBJECT_CMDS[:1], args=["-c", abort_core])
    assert pyref_lines(out) == ["pyref: gdb has no executable: this core was made by %s; "
                                "run gdb %s %s" % (PYTHON, PYTHON, abort_core)], out


def test_same_interpreter_through_a_symlink_reads(abort_core):
    """/usr/bin/python3.11-dbg is a link to the python3.11d that made the core: the same
    build, no complaint, the stack is read."""
    out = pyreftest.gdb_batch(["pyref pystack"], args=["/usr/bin/python3.11-dbg", abort_core])
    assert pyref_lines(out) == [], out
    assert re.search(r'^  File "<string>", line 1, in <module>$', out, re.M), out


def test_no_debug_info_names_the_package(tmp_path):
    """The interpreter that made the core, without its separate debug info: "no debug
    info", with the package that has it (the version from the Py_Version symbol)."""
    if not os.path.exists(RELEASE):
        pytest.skip("%s not installed" % RELEASE)
    core = pyreftest.run_to_core(RELEASE, ABORT, cwd=str(tmp_path))[0]
    out = pyreftest.gdb_batch(["set debug-file-directory /nonexistent", "file " + RELEASE,
                               "core-file " + core] + OBJECT_CMDS[:2])
    want = ("pyref: no debug info for the Python interpreter (type PyObject unknown): install "
            "its debug symbols (python3.11-dbg on Debian and Ubuntu) or use a build with -g")
    assert pyref_lines(out) == [want, want], out


def test_extension_dwarf_without_interpreter_symbols(tmp_path):
    """A release interpreter without its debug symbols, and a traced extension built -g:
    the extension's own DWARF describes PyObject and PyTypeObject, so the ring, the
    history, the object header (type, count, state), `leaks` from the ring and `why` still
    answer; what needs the interpreter's own types (a list's repr, the Python stack, the
    holders in memory) says in one line which package has them."""
    if not os.path.exists(RELEASE):
        pytest.skip("%s not installed" % RELEASE)
    pyreftest.build_ext(SEED_SRC, RELEASE, str(tmp_path))
    core, proc = pyreftest.run_to_core(RELEASE, [SEED_DRIVER, str(tmp_path), "leak", "3"],
                                       cwd=str(tmp_path))
    arg = int(re.search(r"arg (\d+)", proc.stdout).group(1))
    cmds = ["history", "show", "leaks", "why", "pystack", "owners"]
    out = pyreftest.gdb_batch(
        ["set debug-file-directory /nonexistent", "file " + RELEASE, "core-file " + core] +
        sum((["echo @@%s\\n" % c, "pyref %s %s" % (c, arg if c in ("history", "show",
                                                                    "owners") else "")]
             for c in cmds), []) + ["echo @@end\\n"])
    s = dict(zip(cmds, out.split("@@")[1:]))
    s = {c: s[c][len(c) + 1:] for c in cmds}
    assert len(re.findall(r"INCREF\s+\d+ -> \d+\s+seedext\.c:\d+ \(leak\)", s["history"])) \
        == 3, out
    assert re.search(r"^type:\s+list \(type object 0x[0-9a-f]+\)$", s["show"], re.M), out
    assert re.search(r"^state:\s+live$", s["show"], re.M), out
    assert "no debug info for PyListObject (install the interpreter's debug symbols: " \
        "python3.11-dbg on Debian and Ubuntu)" in s["show"], out
    assert re.search(r"^\s+3\s+1\s+seedext\.c:\d+ \(leak\)\s+list\s+Py_INCREF", s["leaks"],
                     re.M), out
    assert "note: memory not searched for holders: no debug info" in s["leaks"], out
    assert "verdict:  not-a-refcount-bug" in s["why"], out
    # gdb's error lines (pystack's and owners') come last, on stderr: one line each
    package = "(install the interpreter's debug symbols: python3.11-dbg on Debian and Ubuntu)"
    lines = pyref_lines(out)
    assert len(lines) == 2 and all(l.startswith("pyref: no debug info for ") and
                                   l.endswith(package) for l in lines), out
    assert "the Python stack reads the interpreter's thread states" in lines[0], out
