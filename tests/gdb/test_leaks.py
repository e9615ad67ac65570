"""`pyref leaks` on real interpreters: a traced extension (tests/ext/owners_ext.c) leaks one
reference per call over 1000 calls, and the top group must be the leaking line with count
1000; a correct extension function called 1000 times must report no leak; a ring too small
for the history must say so. Live (stopped at a breakpoint) and from a core."""
import json
import os
import re

import pytest

import pyreftest
from pyref.rules.leaks import MAX_LEAK_SCAN  # noqa: E402  (pyreftest puts gdbext/ on the path)

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "owners_ext.c")
TARGET = os.path.join(pyreftest.ROOT, "tests", "gdb_targets", "owners_target.py")
LINES = pyreftest.marker_lines(SRC)
COMMANDS = ["echo @@ text\\n", "pyref leaks", "echo @@ json\\n", "pyref leaks --json",
            "echo @@ top\\n", "pyref leaks --top 1", "echo @@ end\\n"]


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


@pytest.fixture(scope="module")
def built(python, build_extension):
    return build_extension(SRC, python)


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
    # all 1000 are searched (the default --max-search is larger)
    assert data["scan"]["candidates"] == 1000 and data["scan"]["searched"] == 1000, data
    assert top["searched"] == 1000 and data["held"]["total"] == 0, data
    lines = s["text"].splitlines()
    assert lines[0].startswith("1000 unreleased references at 1 site"), s["text"]
    assert re.match(r"\s+1000\s+1000\s+owners_ext\.c:%d \(leak_ref\)\s+Token\s+Py_INCREF  "
                    r"e\.g\. 0x[0-9a-f]+$" % LINES["leak-incref"], lines[2]), s["text"]
    assert "note: holders searched for" not in s["text"], s["text"]
    # where the ring last shows leak_ref after each leaked INCREF
    assert lines[3].strip().startswith("lost: "), s["text"]
    assert top["lost"]["function"] == "leak_ref", top
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


@pytest.fixture(scope="module")
def built_o0(python, build_extension):
    """owners_ext at -O0, so that hold_local's local lives in its frame (test_owners)."""
    return build_extension(SRC, python, ["-O0"])


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
                 "echo @@ bytes\\n", "pyref owners --all $o_leaked",
                 "pyref leaks --max-search 0",
                 "echo @@ end\\n"]


@pytest.fixture(scope="module")
def held_built(python, build_extension):
    return build_extension(HELD_SRC, python)


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


def test_byte_buffer_does_not_hold(held):
    """The first leaked Token's address, 8 times in a bytearray's bytes (BYTES: its own
    buffer, or on 3.15 a bytes object it wraps): shown with --all as stale data, never
    counted; the Token stays leaked (test_real_leaks_stay_leaks)."""
    s, (_, minor, _) = held
    text = s["bytes"]
    data = [l for l in text.splitlines() if re.search(r"  (bytearray|bytes) object ", l)]
    shape = (r"bytes object 0x[0-9a-f]+ data at offset \+\d+ \(bytes, not references\)  "
             r"\[stale: a bytes object's data\]$" if minor >= 15 else
             r"bytearray object 0x[0-9a-f]+ byte buffer 0x[0-9a-f]+\+\d+ \(data, not "
             r"references\)  \[stale: a byte buffer's leftover data")
    assert len(data) == 8 and all(re.search(shape, l) for l in data), text


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
    assert (scan["candidates"], scan["searched"], scan["limit"]) == \
        (cands, cands, MAX_LEAK_SCAN)
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
