"""Damaged evidence, on real cores read by gdb: the adversarial matrix. A python3.11d core
of tests/ext/seedext.c leaking 3 references to one list (a known answer: 3 unreleased
references at seedext.c's @leak-incref) is cut at 10, 50, 90 and 99 % and just past the
ring header, and copies of it have their ring mutated the way the reader must catch (a
torn record, a seq flipped by 2^30, descriptors aliasing one ring, a ring pointer into
unmapped memory, a head of 2^64-1, records lost). Every command's answer must carry the
caveat, never the confident "no leaks" / "no transitions" / "not traced", and no verdict
may change without saying so. Strings from the target reach the terminal escaped."""
import json
import os
import re
import shutil
import struct
import subprocess

import pytest

import pyreftest

PYTHON = "/usr/bin/python3.11d"
SEED_SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "seedext.c")
SEED_DRIVER = os.path.join(pyreftest.ROOT, "tests", "ext", "seed_driver.py")
LEAK_LINE = pyreftest.marker_lines(SEED_SRC)["leak-incref"]
CONFIDENT = re.compile(r"^(no leaks: |no transitions of |ring: no C site holds|"
                       r".*not traced)", re.M)

pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="no %s" % PYTHON)


@pytest.fixture(scope="module")
def leak_core(build_extension, tmp_path_factory):
    built = build_extension(SEED_SRC, PYTHON)
    d = tmp_path_factory.mktemp("leak-core")
    core, p = pyreftest.run_to_core(PYTHON, [SEED_DRIVER, built.moddir, "leak", "3"],
                                    cwd=str(d))
    words = p.stdout.split()
    ids = dict(zip(words[0::2], words[1::2]))
    from pyref.reader import corefile
    with corefile.Core(core) as c:
        ring = int.from_bytes(c.read(c.symbol("pyref_ring"), 8), "little")
    return {"core": core, "arg": int(ids["arg"]), "ring": ring}


def file_offset(core, addr):
    from pyref.reader import corefile
    with corefile.Core(core) as c:
        for s in c.segments:
            if s.vaddr <= addr < s.vaddr + s.filesz:
                return s.offset + addr - s.vaddr
    raise AssertionError("0x%x not in the core's bytes" % addr)


def run(core, arg, commands):
    """{command: its output} from one gdb session on `core`."""
    cmds = []
    for c in commands:
        cmds += ["echo @@CMD %s\\n" % c, c.replace("ARG", "%d" % arg)]
    p = subprocess.run(pyreftest.gdb_command(cmds + ["echo @@CMD end\\n"], [PYTHON, core]),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace", timeout=300)
    out = p.stdout
    parts = re.split(r"^@@CMD (.*)\n", out, flags=re.M)
    res = dict(zip(parts[1::2], parts[2::2]))
    for c, text in res.items():
        for bad in ("Python Exception", "Traceback", "internal error"):
            assert bad not in text, (c, text)
    return res


ALL = ["pyref ring", "pyref history ARG", "pyref leaks --no-scan", "pyref why ARG",
       "pyref owners ARG", "pyref show ARG", "pyref pystack", "pyref leaks --no-scan --json",
       "pyref why --json ARG", "pyref history --json ARG"]


def test_intact_core_known_answer(leak_core):
    res = run(leak_core["core"], leak_core["arg"], ALL)
    assert "3 unreleased references at 1 site" in res["pyref leaks --no-scan"], res
    assert "caveat" not in res["pyref leaks --no-scan"]
    rep = json.loads(res["pyref leaks --no-scan --json"])
    assert rep["caveats"]["complete"] and rep["total"] == 3
    assert json.loads(res["pyref history --json ARG"])["complete"] is True


def _cut(core, dest, size):
    with open(core, "rb") as f, open(dest, "wb") as g:
        g.write(f.read(size))
    return str(dest)


@pytest.mark.parametrize("where", ["10%", "50%", "90%", "99%", "header+0", "header+300",
                                   "header+4096"])
def test_cut_core_says_truncated_everywhere(leak_core, tmp_path, where):
    size = os.path.getsize(leak_core["core"])
    if where.endswith("%"):
        n = size * int(where[:-1]) // 100
    else:
        n = file_offset(leak_core["core"], leak_core["ring"]) + int(where.split("+")[1])
    core = _cut(leak_core["core"], tmp_path / "core.cut", n)
    res = run(core, leak_core["arg"], ALL)
    for c, text in res.items():
        if c == "end":
            continue
        assert "truncated" in text, (where, c, text)
        assert not CONFIDENT.search(text), (where, c, text)
    why = json.loads(res["pyref why --json ARG"]) if res["pyref why --json ARG"].startswith(
        "{") else None
    if why is not None:
        assert why["verdict"] == "unknown" and why["caveats"]["truncated"], why


def mutate(leak_core, tmp_path, fn):
    """A copy of the core with fn(patch, header_addr, desc(i), slot(i, pos)) applied:
    patch(addr, bytes) writes the copy at a target address."""
    core = str(tmp_path / "core.mut")
    shutil.copy(leak_core["core"], core)
    ring = leak_core["ring"]
    from pyref.reader import corefile
    with corefile.Core(core) as c:
        d0 = struct.unpack("<QQ", c.read(ring + 256, 16))

    def patch(addr, data):
        off = file_offset(core, addr)
        with open(core, "r+b") as f:
            f.seek(off)
            f.write(data)

    def slot(pos):
        return d0[0] + pos * 32
    fn(patch, ring, d0, slot)
    return core


def _incref_positions(core, arg):
    ring, _ = pyreftest.ring_from_core(core)
    return [r.pos for r in ring.records if r.obj == arg and r.op_name == "INCREF"]


def test_torn_record_is_said(leak_core, tmp_path):
    """A torn INCREF of the leaked object: leaks shows 2 and says a record is torn;
    history says the object's history is incomplete."""
    pos = _incref_positions(leak_core["core"], leak_core["arg"])[-1]
    core = mutate(leak_core, tmp_path,
                  lambda patch, ring, d0, slot: patch(slot(pos) + 24, bytes(8)))
    res = run(core, leak_core["arg"], ALL)
    assert "1 torn record" in res["pyref leaks --no-scan"], res["pyref leaks --no-scan"]
    assert "history incomplete: " in res["pyref history ARG"]
    assert "a torn or rejected record names 0x%x" % leak_core["arg"] in \
        res["pyref history ARG"]
    assert json.loads(res["pyref history --json ARG"])["complete"] is False
    assert "torn" in res["pyref ring"]
    why = json.loads(res["pyref why --json ARG"])     # its history lacks a record: unknown
    assert why["verdict"] == "unknown" and "torn" in why["summary"], why


def test_seq_flip_rejected(leak_core, tmp_path):
    pos = _incref_positions(leak_core["core"], leak_core["arg"])[0]

    def flip(patch, ring, d0, slot):
        from pyref.reader import corefile
        with corefile.Core(leak_core["core"]) as c:
            s = struct.unpack("<I", c.read(slot(pos) + 24, 4))[0]
        patch(slot(pos) + 24, struct.pack("<I", s + (1 << 30)))
    core = mutate(leak_core, tmp_path, flip)
    res = run(core, leak_core["arg"], ALL)
    assert re.search(r"rejected +1 +\(implausible: 1 seq above the header's counter\)",
                     res["pyref ring"]), res["pyref ring"]
    assert "1 record rejected as implausible" in res["pyref leaks --no-scan"]
    why = json.loads(res["pyref why --json ARG"])
    assert why["verdict"] == "unknown" or not why["caveats"]["complete"], why


def test_aliased_descriptors_not_double_counted(leak_core, tmp_path):
    def alias(patch, ring, d0, slot):
        from pyref.reader import corefile
        with corefile.Core(leak_core["core"]) as c:
            desc = c.read(ring + 256, 64)
        for i in range(1, 8):
            patch(ring + 256 + 64 * i, desc)
    core = mutate(leak_core, tmp_path, alias)
    res = run(core, leak_core["arg"], ALL)
    assert "3 unreleased references at 1 site" in res["pyref leaks --no-scan"], res
    assert "overlaps thread 0's" in res["pyref leaks --no-scan"]
    assert "7 descriptor aliasing another's ring" in res["pyref ring"]


def test_unreadable_ring_is_unknown(leak_core, tmp_path):
    """The descriptor's ring pointer moved into unmapped memory: no record can be read,
    and no command says there is no leak or no history."""
    core = mutate(leak_core, tmp_path, lambda patch, ring, d0, slot:
                  patch(ring + 256, struct.pack("<Q", 0x100000000000)))
    res = run(core, leak_core["arg"], ALL)
    for c, text in res.items():
        assert not CONFIDENT.search(text), (c, text)
    assert res["pyref history ARG"].startswith("history unknown: ")
    assert re.search(r"^no leaks in the 0 records that could be read; \d+ could not",
                     res["pyref leaks --no-scan"], re.M), res["pyref leaks --no-scan"]
    assert "ring: unknown: " in res["pyref owners ARG"], res["pyref owners ARG"]


def test_head_2_64_rejected(leak_core, tmp_path):
    core = mutate(leak_core, tmp_path, lambda patch, ring, d0, slot:
                  patch(ring + 256 + 8, struct.pack("<Q", (1 << 64) - 1)))
    res = run(core, leak_core["arg"], ["pyref ring", "pyref leaks --no-scan",
                                       "pyref history ARG"])
    assert "18446744073709551615" in res["pyref ring"] and "written      0" in res["pyref ring"]
    assert "written      18446744073709551615" not in res["pyref ring"]
    assert not CONFIDENT.search(res["pyref leaks --no-scan"] + res["pyref history ARG"])


def test_lost_records_said(leak_core, tmp_path):
    """Records lost for want of a thread slot: no command answers as if they were none."""
    core = mutate(leak_core, tmp_path, lambda patch, ring, d0, slot:
                  patch(ring + 256 + 32, struct.pack("<Q", 600)))     # thread 0's lost
    res = run(core, leak_core["arg"], ALL)
    assert "600 records lost" in res["pyref leaks --no-scan"]
    assert "history incomplete: " in res["pyref history ARG"]


def test_target_strings_escaped(tmp_path):
    """A type name and a co_filename holding escape sequences (clear screen, OSC title):
    shown escaped by show, pystack and in JSON, never raw."""
    script = tmp_path / "evil.py"
    script.write_text(
        "import os\n"
        "Evil = type('Evil\\x1b[2J\\x1b]0;pwned\\x07', (), {})\n"
        "e = Evil()\n"
        "print('obj', id(e), flush=True)\n"
        "code = compile('os.abort()', '\\x1b[31mred.py', 'exec')\n"
        "exec(code)\n")
    core, p = pyreftest.run_to_core(PYTHON, [str(script)], cwd=str(tmp_path))
    obj = int(p.stdout.split()[1])
    out = pyreftest.gdb_batch(["pyref show %d" % obj, "pyref show --json %d" % obj,
                               "pyref pystack"], [PYTHON, core])
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert "Evil\\x1b[2J\\x1b]0;pwned\\x07" in out, out
    assert "\\x1b[31mred.py" in out, out


LEAKER = r"""
#include <Python.h>
static PyObject *leak(PyObject *self, PyObject *arg)
{
    Py_INCREF(arg); /* leaks one reference per call */
    Py_RETURN_NONE;
}
static PyMethodDef methods[] = {{"leak", leak, METH_O, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "%(name)s", NULL, -1, methods};
PyMODINIT_FUNC PyInit_%(name)s(void) { return PyModule_Create(&mod); }
"""


def test_every_ring_in_the_process_is_read(tmp_path):
    """Two extensions linked with --static-libs (a ring each) beside one on the shared
    runtime: all three rings are found and read, and leaks counts the 1 + 2 + 3 leaked
    references at their 3 sites."""
    mods = {"leak_a": True, "leak_b": True, "leak_c": False}      # name -> static
    for name, static in mods.items():
        src = tmp_path / (name + ".c")
        src.write_text(LEAKER % {"name": name})
        pyreftest.build_ext(str(src), PYTHON, str(tmp_path), static=static)
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import os, sys\nsys.path.insert(0, %r)\n"
        "import leak_a, leak_b, leak_c\n"
        "a, b, c = [], [], []\n"
        "leak_a.leak(a)\nfor _ in range(2): leak_b.leak(b)\n"
        "for _ in range(3): leak_c.leak(c)\n"
        "os.abort()\n" % str(tmp_path))
    core, _ = pyreftest.run_to_core(PYTHON, [str(driver)], cwd=str(tmp_path))
    res = run(core, 0, ["pyref ring", "pyref leaks --no-scan", "pyref ring --json"])
    rings = json.loads(res["pyref ring --json"])["rings"]
    assert len(rings) == 3, res["pyref ring"]
    assert "6 unreleased references at 3 sites" in res["pyref leaks --no-scan"], res


THREADS_DRIVER = """
import os, sys, threading
sys.path.insert(0, sys.argv[1])
import seedext
held = [[] for _ in range(4)]
def work(k):
    for _ in range(30000):
        seedext.leak(held[k])
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print("arg", id(held[0]), flush=True)
os.abort()
"""


def _core_capped(cwd, args, cap):
    """The kernel's core of `args`, written with RLIMIT_CORE = cap bytes (None: no cap)."""
    import glob
    import resource
    for old in glob.glob(os.path.join(cwd, "core*")):
        os.unlink(old)
    lim = resource.RLIM_INFINITY if cap is None else cap

    def limit():
        resource.setrlimit(resource.RLIMIT_CORE, (lim, lim))
    p = subprocess.run([PYTHON] + args, cwd=cwd, capture_output=True, text=True,
                       preexec_fn=limit, timeout=300)
    assert p.returncode < 0, p.stderr
    cores = glob.glob(os.path.join(cwd, "core*"))
    assert cores, "no core in %s" % cwd
    return cores[0], p


def test_size_capped_core_keeps_the_header(build_extension, tmp_path):
    """A 4-thread process's core written by the kernel under a size cap (ulimit -c) of
    20, 50 and 70 % of the bytes an uncapped one writes: the header, mapped lowest, is in
    what was kept (the pyref_ring pointer, in libpyref's data mapped high, may not be: the
    scan finds the header), so the ring is found, and every answer says the core is
    truncated."""
    if not pyreftest.kernel_cores_here():
        pytest.skip("the kernel does not write cores into the cwd (core_pattern)")
    built = build_extension(SEED_SRC, PYTHON)
    script = tmp_path / "threads.py"
    script.write_text(THREADS_DRIVER)
    full, _ = _core_capped(str(tmp_path), [str(script), built.moddir], None)
    size = os.path.getsize(full)
    written = os.stat(full).st_blocks * 512         # the cap counts these, not the holes
    assert written > 8 << 20, written
    for frac in (0.2, 0.5, 0.7):
        core, p = _core_capped(str(tmp_path), [str(script), built.moddir],
                               int(written * frac))
        arg = int(p.stdout.split()[1])
        from pyref.reader import corefile
        with corefile.Core(core) as c:          # the kernel counts written bytes, not holes
            assert c.truncated, (frac, c.size, size)
        res = run(core, arg, ["pyref ring", "pyref leaks --no-scan", "pyref history ARG",
                              "pyref ring --json"])
        rings = json.loads(res["pyref ring --json"])["rings"]
        assert rings and rings[0]["address"] == "0x100000", res["pyref ring"]
        for c in ("pyref ring", "pyref leaks --no-scan", "pyref history ARG"):
            assert "truncated" in res[c], (frac, c, res[c])
            assert not CONFIDENT.search(res[c]), (frac, c, res[c])


def test_lost_for_want_of_a_thread_slot(build_extension, tmp_path):
    """PYREF_RING_THREADS=1: the main thread takes the one slot, four threads leaking
    30000 references each (two records a call: the INCREF, Py_RETURN_NONE's) record
    nothing. No command answers as if nothing leaked."""
    built = build_extension(SEED_SRC, PYTHON)
    script = tmp_path / "threads.py"
    script.write_text("import seedext\n" + THREADS_DRIVER.replace(
        "import seedext\n", "import seedext\nseedext.leak([])\n"))
    core, p = pyreftest.run_to_core(PYTHON, [str(script), built.moddir], cwd=str(tmp_path),
                                    env={"PYREF_RING_THREADS": "1",
                                         "PYTHONPATH": built.moddir})
    arg = int(p.stdout.split()[1])
    res = run(core, arg, ["pyref ring", "pyref leaks --no-scan", "pyref history ARG",
                          "pyref owners ARG", "pyref why --json"])
    assert "lost         240000" in res["pyref ring"], res["pyref ring"]
    for c in ("pyref leaks --no-scan", "pyref history ARG", "pyref owners ARG"):
        assert not CONFIDENT.search(res[c]), (c, res[c])
        assert "240000 records lost" in res[c], (c, res[c])
    assert res["pyref history ARG"].startswith("history unknown: ")
    assert json.loads(res["pyref why --json"])["verdict"] == "unknown"
