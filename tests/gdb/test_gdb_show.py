"""`pyref show` on real interpreters, as a user runs it: the target script
(tests/gdb_targets/objects_target.py) builds one object of each kind, writes their
addresses, corrupts one, frees one, and aborts. Each interpreter is checked twice: stopped
live under gdb at the SIGABRT, and from the kernel's core dump. Then `gdb -batch -nx` runs
`pyref show` on each object and the tests check the words that matter."""
import json
import os
import re

import pytest

import pyreftest

TARGET = os.path.join(pyreftest.ROOT, "tests", "gdb_targets", "objects_target.py")

NAMES = ("int_small int_zero int_large int_neg int_huge str_ascii str_latin1 str_ucs2 "
         "str_ucs4 str_long bytes float tuple tuple1 tuple0 list list0 dict dict_int_keys "
         "set set0 frozenset type builtin_type module function method none true false "
         "huge_list big_dict nested split_dict self_list self_dict dict_deleted corrupt "
         "corrupt_nontype freed null").split()

# Commands whose only output is an error line (gdb prints errors on stderr, which
# gdb_batch appends after stdout, so these are matched by their exact text).
ERROR_COMMANDS = ["pyref show 0xdeadbee8", "pyref show nosuchvar", "pyref show",
                  "pyref show (long) PyLong_FromLong(5)"]

EXPECTED_REPR = {
    "int_small": "7", "int_zero": "0", "int_large": str(2 ** 100 + 12345),
    "int_neg": str(-(2 ** 70) - 5),
    "int_huge": "<int of %d 30-bit digits>" % (-(-(7 ** 5000).bit_length() // 30)),
    "str_ascii": "'hello world'", "str_latin1": repr("caf\xe9"),
    "str_ucs2": repr("\u20acuro"), "str_ucs4": repr("smile \U0001F600"),
    "bytes": r"b'\x00AB\xff'", "float": "3.25", "tuple": "(1, 'two', 3.5)",
    "tuple1": "(5,)", "tuple0": "()", "list": "[1, [2, 3], 'x']", "list0": "[]",
    "dict": "{'a': 1, 'b': [2]}", "dict_int_keys": "{1: 'one', 2: 'two'}",
    "set": "{1, 2, 3}", "set0": "set()", "frozenset": "frozenset({'q'})",
    "type": "<class 'Plain'>", "builtin_type": "<class 'int'>", "module": "<module 'os'>",
    "function": "<function free_function at 0xADDR>",
    "method": "<function Outer.Inner.method at 0xADDR>",
    "none": "None", "true": "True", "false": "False",
    "huge_list": "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]",
    "big_dict": "{0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, ...}",
    "nested": "[[[[[[[...]]]]]]]",
    "split_dict": "{'alpha': 1, 'beta': 'two'}", "self_list": "[1, [...]]",
    "self_dict": "{'me': {...}}", "dict_deleted": "{'y': 2, 'z': 3}",
}
EXPECTED_TYPE = {
    "int_small": "int", "int_zero": "int", "int_large": "int", "int_neg": "int",
    "int_huge": "int", "str_ascii": "str", "str_latin1": "str", "str_ucs2": "str",
    "str_ucs4": "str", "str_long": "str", "bytes": "bytes", "float": "float",
    "tuple": "tuple", "tuple1": "tuple", "tuple0": "tuple", "list": "list", "list0": "list",
    "dict": "dict", "dict_int_keys": "dict", "set": "set", "set0": "set",
    "frozenset": "frozenset", "type": "type", "builtin_type": "type", "module": "module",
    "function": "function", "method": "function", "none": "NoneType", "true": "bool",
    "false": "bool", "huge_list": "list", "big_dict": "dict", "nested": "list",
    "split_dict": "dict", "self_list": "list", "self_dict": "dict", "dict_deleted": "dict",
}
IMMORTAL_ON_312 = ("none", "true", "false", "int_small", "int_zero", "tuple0", "builtin_type")


def normalise(text):
    return re.sub(r"0x[0-9a-f]{5,}", "0xADDR", text)


def show_commands():
    cmds = ["source ids.gdb"]
    for name in NAMES:
        cmds += ["echo @@ %s\\n" % name, "pyref show $o_%s" % name]
    cmds += ["echo @@ misaligned\\n", "pyref show $o_list + 1",
             "echo @@ struct_lvalue\\n", "pyref show *(PyObject *) $o_list",
             "echo @@ typed_pointer\\n", "pyref show (PyObject *) $o_float",
             "python import time; _pyref_t0 = time.perf_counter()",
             "echo @@ timed_huge_list\\n", "pyref show $o_huge_list",
             "python print('@@ elapsed %.3f' % (time.perf_counter() - _pyref_t0))",
             "python from pyref.inferior import target; a = int(gdb.parse_and_eval('$o_list')); "
             "print('@@ mapped', *[m.perms for m in target.mappings() if m.start <= a < m.end])",
             "python from pyref.inferior import target; print('@@ none_symbol', "
             "target.symbol_address('_Py_NoneStruct') == int(gdb.parse_and_eval('$o_none')))",
             "set may-call-functions on"] + ERROR_COMMANDS + [
             "echo @@ after_errors\\n", "show may-call-functions"]
    return cmds


def sections(output):
    """{marker: {label: value}} from the '@@ marker' lines and `pyref show`'s rows."""
    out = {}
    current = None
    for line in output.splitlines():
        m = re.match(r"@@ (\w+)(?: (.*))?$", line)
        if m:
            current = out.setdefault(m.group(1), {"_lines": []})
            if m.group(2):
                current["_value"] = m.group(2)
            continue
        if current is None:
            continue
        current["_lines"].append(line)
        m = re.match(r"(address|type|refcount|state|size|repr):\s+(.*)$", line)
        if m:
            current[m.group(1)] = m.group(2)
    return out


@pytest.fixture(scope="module", params=pyreftest.every_version())
def runs(request, tmp_path_factory):
    """{'live': (output, ids), 'core': (output, ids)} and the version for one interpreter."""
    python = request.param
    version = pyreftest.py_version(python)
    result = {}

    live_dir = str(tmp_path_factory.mktemp("show-live"))
    out = pyreftest.gdb_batch(["set environment PYTHONMALLOC debug", "run"] + show_commands(),
                              args=["--args", python, TARGET, live_dir], cwd=live_dir)
    result["live"] = (out, _ids(live_dir))

    core_dir = str(tmp_path_factory.mktemp("show-core"))
    core, _ = pyreftest.run_to_core(python, [TARGET, core_dir], cwd=core_dir,
                                    env={"PYTHONMALLOC": "debug"})
    out = pyreftest.gdb_batch(show_commands(), args=[python, core], cwd=core_dir)
    result["core"] = (out, _ids(core_dir))
    return result, version


def _ids(d):
    with open(os.path.join(d, "ids.json")) as f:
        return json.load(f)


@pytest.fixture(params=["live", "core"])
def run(request, runs):
    result, version = runs
    out, ids = result[request.param]
    return out, sections(out), ids, version, request.param


# ---------------------------------------------------------------------------------------
def test_no_python_exception(run):
    out = run[0]
    assert "Python Exception" not in out and "Traceback" not in out, out
    assert "internal error" not in out, out


def test_types_and_reprs(run):
    out, sec, ids, version, mode = run
    for name, type_name in EXPECTED_TYPE.items():
        s = sec[name]
        assert s.get("state") == "live", (name, s)
        assert s["type"].startswith(type_name + " (type object 0x"), (name, s)
        assert s["address"] == "0x%x" % ids["ids"][name][0]
    for name, expected in EXPECTED_REPR.items():
        assert normalise(sec[name]["repr"]) == expected, (name, sec[name])


def test_long_str_is_bounded(run):
    r = run[1]["str_long"]["repr"]
    assert r.startswith("'abababab") and r.endswith("...") and len(r) <= 1024


def test_sizes(run):
    sec, ids = run[1], run[2]
    for name, size in ids["sizes"].items():
        assert sec[name]["size"].startswith("%d bytes" % size), (name, sec[name])


def test_refcounts(run):
    out, sec, ids, (major, minor, _), mode = run
    for name, (_, refcnt) in ids["ids"].items():
        if refcnt is not None:
            # 3.13t adds how the count is split: "1 (local 1 + shared 0; owner thread ...)"
            rc = sec[name]["refcount"]
            if refcnt >= 1 << 30:  # immortal where the target ran (3.13t: code constants)
                assert rc.startswith("immortal ("), (name, rc)
                continue
            assert rc == str(refcnt) or rc.startswith("%d (local " % refcnt), (name, rc)
    for name in IMMORTAL_ON_312:
        if (major, minor) >= (3, 12):
            assert re.match(r"immortal \((ob_refcnt|ob_ref_local) 0x", sec[name]["refcount"]), \
                sec[name]
        else:
            assert re.fullmatch(r"\d+", sec[name]["refcount"]), sec[name]


def test_freed_object(run):
    s = run[1]["freed"]
    assert s["state"].startswith("freed: header filled with 0xDD"), s
    assert "repr" not in s
    if run[3][1] == 13 and s["refcount"].endswith(")") and "(local " in s["refcount"]:
        # 3.13t: mimalloc keeps the freed block's ob_tid, and the fill starts after it
        assert s["refcount"].startswith("0 (local 0 + shared 0"), s
    else:
        assert s["refcount"] == "? (0xdddddddddddddddd: fill bytes)", s


def test_corrupted_type(run):
    s = run[1]["corrupt"]
    assert s["state"] == "not an object: ob_type 0xdeadbeef is unreadable", s
    assert s["type"] == "? (ob_type 0xdeadbeef)"
    s = run[1]["corrupt_nontype"]
    list_addr = run[2]["ids"]["list"][0]
    assert re.fullmatch(r"not an object: ob_type 0x%x is not a type: its own type 0x[0-9a-f]+ "
                        r"lacks Py_TPFLAGS_TYPE_SUBCLASS" % list_addr, s["state"]), s


def test_null_and_misaligned(run):
    sec = run[1]
    assert sec["null"]["state"] == "not an object: NULL pointer"
    assert sec["null"]["address"] == "0x0" and "type" not in sec["null"]
    assert sec["misaligned"]["state"].startswith("not an object: misaligned address")


def test_expression_forms(run):
    sec, ids = run[1], run[2]
    assert sec["struct_lvalue"]["address"] == "0x%x" % ids["ids"]["list"][0]
    assert sec["struct_lvalue"]["repr"] == "[1, [2, 3], 'x']"
    assert sec["typed_pointer"]["repr"] == "3.25"


def test_huge_list_is_fast(run):
    sec = run[1]
    assert sec["timed_huge_list"]["repr"] == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]"
    assert float(sec["elapsed"]["_value"]) < 1.0, sec["elapsed"]


def test_errors_are_one_line(run):
    out, sec, ids, version, mode = run
    assert "pyref: cannot read memory at 0xdeadbee8: no object there" in out
    assert 'pyref: No symbol "nosuchvar" in current context.' in out
    assert 'pyref show: the following arguments are required: EXPR (see "help pyref show")' \
        in out
    if mode == "live":  # pyref never calls into the inferior, and restores the setting
        assert "pyref: Cannot call functions in the program: may-call-functions is off." \
            in out, out
        assert sec["after_errors"]["_lines"][0] == \
            "Permission to call functions in the program is on.", sec["after_errors"]


def test_target_helpers(run):
    """What `pyref ring` builds on: mappings() covers the heap, symbols resolve."""
    sec = run[1]
    assert sec["mapped"]["_value"] == "rw-p", sec["mapped"]
    assert sec["none_symbol"]["_value"] == "True"


# ---------------------------------------------------------------------------------------
# A release interpreter without the debug allocator: pymalloc free blocks, no debug info
# ---------------------------------------------------------------------------------------
RELEASE = "/usr/bin/python3.11"
PYMALLOC_TARGET = os.path.join(pyreftest.ROOT, "tests", "gdb_targets", "pymalloc_target.py")


@pytest.fixture(scope="module")
def release_core(tmp_path_factory):
    if not os.path.exists(RELEASE):
        pytest.skip("%s not installed" % RELEASE)
    d = str(tmp_path_factory.mktemp("pymalloc"))
    env = {"PYTHONMALLOC": "pymalloc"}
    core, _ = pyreftest.run_to_core(RELEASE, [PYMALLOC_TARGET, d], cwd=d, env=env)
    with open(os.path.join(d, "freed.txt")) as f:
        return core, f.read().split()


def test_pymalloc_free_blocks(release_core):
    core, addrs = release_core
    out = pyreftest.gdb_batch(["pyref show " + a for a in addrs], args=[RELEASE, core])
    states = re.findall(r"^state:\s+(.*)$", out, re.M)
    assert len(states) == len(addrs), out
    freed = [s for s in states if s.startswith("freed: ")]
    assert len(freed) >= len(addrs) // 2, states  # a few blocks may have been reused
    assert any("pymalloc pool: a free block" in s for s in freed), states
    assert re.search(r"^type:\s+bytes \(type object 0x[0-9a-f]+\), from the stale header$",
                     out, re.M)
    assert "Python Exception" not in out


def test_no_debug_info_is_one_line(release_core):
    core, addrs = release_core
    out = pyreftest.gdb_batch(["set debug-file-directory /nonexistent", "file " + RELEASE,
                               "core-file " + core, "pyref show " + addrs[0]])
    assert "pyref: no debug info for the Python interpreter (type PyObject unknown)" in out
    assert "Python Exception" not in out and "Traceback" not in out


# ---------------------------------------------------------------------------------------
# Without an interpreter: errors, help, loading twice
# ---------------------------------------------------------------------------------------
def test_no_process_or_core():
    out = pyreftest.gdb_batch(["pyref show 0", "pyref show $pc"])
    assert out.count("pyref: no process or core file") == 2, out
    assert "Python Exception" not in out


def test_help_shape():
    out = pyreftest.gdb_batch(["help pyref", "echo @@\\n", "help pyref show"])
    prefix, show = out.split("@@\n")
    assert prefix.startswith("Find reference-count bugs in CPython C extensions.\n")
    assert re.search(r"^pyref show -- Show a Python object", prefix, re.M)
    lines = show.splitlines()
    assert lines[0].startswith("Show a Python object:")
    assert lines[1] == "Usage: pyref show [--json] EXPR"
    assert re.search(r"^  EXPR\s+a GDB expression", show, re.M)


def test_loading_twice_is_harmless():
    out = pyreftest.gdb_batch(["source " + pyreftest.LOADER, "help pyref"])
    assert out.count("pyref show -- ") == 1, out
    assert "Python Exception" not in out and "pyref: cannot load" not in out
