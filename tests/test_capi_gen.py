"""c_helpers/capi/gen_capi.py: the committed pyref_capi.h and rules/_capi_data.py are exactly
what the generator makes from the reference data in the tree (c_helpers/capi/data/) and
capi_overrides.txt; the curated facts (which versions declare an API, which are in the
limited API) agree with the installed headers; the table says the right thing about the APIs
the C-API rules are famous for."""
import os
import re
import subprocess
import sys

import pytest

import pyreftest
from pyref.rules import _capi_data, capi

CAPI = os.path.join(pyreftest.ROOT, "c_helpers", "capi")
GEN = os.path.join(CAPI, "gen_capi.py")
OVERRIDES = os.path.join(CAPI, "capi_overrides.txt")
SHIM = os.path.join(pyreftest.ROOT, "c_helpers", "shim")
HEADER = os.path.join(SHIM, "pyref_capi.h")
PRELUDE = os.path.join(SHIM, "pyref_capi_prelude.h")
RULES = os.path.join(pyreftest.GDBEXT, "pyref", "rules")
TABLE = os.path.join(RULES, "_capi_data.py")


def generate(outdir, overrides=None, seed="0"):
    """Runs the generator on its default inputs (or `overrides`), writing into `outdir`."""
    header, table = os.path.join(outdir, "pyref_capi.h"), os.path.join(outdir, "_capi_data.py")
    cmd = [sys.executable, GEN, "--header", header, "--table", table]
    if overrides:
        cmd += ["--overrides", overrides]
    p = subprocess.run(cmd, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONHASHSEED=seed))
    return p, header, table


def read(path):
    with open(path, "rb") as f:
        return f.read()


def load_table():
    return capi


# ---------------------------------------------------------------------------------------
# The committed outputs are the generator's
# ---------------------------------------------------------------------------------------
def test_committed_files_are_generated(tmp_path):
    p, header, table = generate(str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert read(header) == read(HEADER), "pyref_capi.h is stale: run make capi"
    assert read(table) == read(TABLE), "rules/_capi_data.py is stale: run make capi"


def test_deterministic_across_hash_seeds(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    pa, ha, ta = generate(str(a), seed="1")
    pb, hb, tb = generate(str(b), seed="4242")
    assert pa.returncode == pb.returncode == 0
    assert read(ha) == read(hb) and read(ta) == read(tb)


@pytest.mark.parametrize("line,message", [
    ("steal NoSuchApi x always : r", "NoSuchApi is not in the reference data"),
    ("steal PyList_SetItem nosuch always : r", "has no parameter 'nosuch'"),
    ("steal PyList_SetItem item sometimes : r", "steal NAME ARG always|success"),
    ("skip PyList_New", "needs ' : reason'"),
    ("frobnicate PyList_New : r", "unknown directive 'frobnicate'"),
])
def test_bad_overrides_are_one_line_errors(tmp_path, line, message):
    bad = tmp_path / "overrides.txt"
    bad.write_text(open(OVERRIDES).read() + line + "\n")
    p, _, _ = generate(str(tmp_path), overrides=str(bad))
    assert p.returncode == 1
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_every_override_has_a_reason():
    with open(OVERRIDES) as f:
        for n, line in enumerate(f, 1):
            if line.strip() and not line.startswith("#"):
                body, sep, reason = line.partition(" : ")
                assert sep and reason.strip(), "capi_overrides.txt:%d has no reason" % n


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------
def test_table_is_pure_data():
    """The generated module is the table alone; the accessors import no gdb."""
    for path in (TABLE, os.path.join(RULES, "capi.py")):
        with open(path) as f:
            assert "import gdb" not in f.read(), path
    assert sorted(n for n in vars(_capi_data) if not n.startswith("__")) == ["TABLE"]
    assert all(len(row) == len(capi.Api._fields) - 1 for row in _capi_data.TABLE.values())
    t = load_table()
    assert t.get("NoSuchApi") is None and t.rule("NoSuchApi") is None
    assert t.names() == sorted(t.names()) and len(t.names()) > 700


@pytest.mark.parametrize("name,returns,container,steals,rule", [
    ("PyList_New", "new", None, (), "DECREF the result when done"),
    ("PyTuple_GetItem", "borrowed", "p", (),
     "do not DECREF; INCREF it if you keep it past a call that may run Python code"),
    ("PyDict_GetItem", "borrowed", "p", (), None),
    ("PySequence_Fast_GET_ITEM", "borrowed", "o", (), None),
    ("PyList_SetItem", "none", "list", (("item", True),),
     "the reference to ITEM is stolen even if the call fails: do not DECREF it afterwards"),
    ("PyTuple_SET_ITEM", "none", "p", (("o", True),), None),
    ("PyModule_AddObject", "none", "module", (("value", False),),
     "the reference to VALUE is stolen only if the call succeeds: DECREF it yourself when "
     "it fails"),
    ("PyModule_Add", "none", "module", (("value", True),), None),
    ("PyException_SetCause", "none", "ex", (("cause", True),), None),   # data says +1
    ("PySet_Discard", "none", None, (), None),                          # data says -1
    ("PyErr_Restore", "none", None, (("type", True), ("value", True), ("traceback", True)),
     None),
    ("PyErr_Format", "null", None, (), None),
])
def test_table_rules(name, returns, container, steals, rule):
    a = load_table().get(name)
    assert (a.returns, a.container, tuple(tuple(s) for s in a.steals)) == \
        (returns, container, steals)
    if rule:
        assert a.rule == rule
    assert a.steals == tuple(a.steals) and all(
        isinstance(s.steals_on_failure, bool) for s in a.steals)


def test_table_versions_and_wrappers():
    t = load_table()
    assert t.get("PyList_New").versions == ("3.11", "main")
    assert t.get("PyUnicode_FromUnicode").versions == ("3.11",)
    assert t.get("PyUnicode_FromUnicode").until == "3.12"
    assert t.get("PyModule_Add").since == "3.13" and t.get("PyModule_Add").versions == ()
    assert t.get("PyTuple_GET_ITEM").wrapper == "macro"
    assert t.get("Py_BuildValue").wrapper == "builder"
    assert t.get("Py_BuildValue").recorded == ("NEW", "STEAL")
    assert t.get("PyObject_CallFunction").wrapper == "alias"
    assert t.get("PyArg_ParseTuple").recorded == ("BORROW",)
    assert t.get("PyCFunction_New").via == "PyCMethod_New"
    assert t.get("PyDict_Next").outs[0] == ("pkey", "borrowed", "nonzero", "p")
    assert t.get("Py_TYPE").recorded == ()


def test_header_wraps_what_the_table_says():
    """Generated wrappers and the prelude's hand-written parser and builder wrappers define
    exactly the names the table says are wrapped; the generated header holds no helper."""
    with open(HEADER) as f:
        generated = f.read()
    with open(PRELUDE) as f:
        prelude = f.read()
    assert "static inline int pyref__argfmt_outputs" not in generated
    assert '#include "pyref_capi_prelude.h"' in generated
    assert "@" not in prelude
    header = generated + prelude
    t = load_table()
    for name in t.names():
        a = t.get(name)
        defined = re.search(r"#define %s\(" % re.escape(name), header) is not None
        if a.wrapper in ("function", "macro", "alias", "alloc", "parser", "builder"):
            assert defined, name
            assert a.recorded, name
        else:
            assert not defined, name
    assert "#undef PyTuple_GET_ITEM" in header and "#undef PyList_New" not in header


# ---------------------------------------------------------------------------------------
# The curated availability facts, against the installed headers
# ---------------------------------------------------------------------------------------
def _preprocessed(python, limited, tmp_path):
    major, minor, _ = pyreftest.py_version(python)
    flags = ["-E", "-P", "-DPYREF_SHIM_OFF"]   # the interpreter's headers alone
    if limited:
        flags.append("-DPy_LIMITED_API=0x%02X%02X0000" % (major, minor))
    src = tmp_path / "inc.c"
    src.write_text("#include <Python.h>\n")
    inc = pyreftest.pyref_flags(python, "--cflags") + \
        pyreftest.interpreter_info(python).get("cflags", [])
    text = subprocess.check_output(["gcc"] + flags + inc + [str(src)], text=True)
    macros = subprocess.check_output(["gcc", "-dM"] + flags[:1] + flags[2:] + inc + [str(src)],
                                     text=True)
    defined = set(re.findall(r"^#define (\w+)", macros, re.M))
    return text, defined, (major, minor)


@pytest.mark.parametrize("python", pyreftest.every_version())
def test_availability_matches_headers(python, tmp_path):
    """since/until/limited of every wrapped API agree with what this interpreter's
    Python.h declares (a function) or defines (a macro)."""
    t = load_table()
    full, full_macros, version = _preprocessed(python, False, tmp_path)
    # free-threaded builds refuse Py_LIMITED_API (#error): nothing there to compare
    free_threaded = pyreftest.interpreter_info(python).get("free_threaded")
    lim, lim_macros, _ = ("", set(), None) if free_threaded else \
        _preprocessed(python, True, tmp_path)
    vt = lambda s: tuple(int(x) for x in s.split("."))
    wrong = []
    for name in t.names():
        a = t.get(name)
        if not a.wrapper or a.wrapper == "alias" and name in full_macros:
            continue
        here = re.search(r"\b%s\s*\(" % name, full) is not None or name in full_macros
        want = (not a.since or vt(a.since) <= version) and \
            (not a.until or version < vt(a.until))
        if here != want:
            wrong.append("%s: declared=%s, table since=%s until=%s" % (name, here, a.since,
                                                                     a.until))
        if here and not free_threaded:
            in_lim = re.search(r"\b%s\s*\(" % name, lim) is not None or name in lim_macros
            want_lim = bool(a.limited) and vt(a.limited) <= version
            # a macro may be defined under Py_LIMITED_API yet expand to non-limited names
            if in_lim != want_lim and not (a.wrapper == "macro" and in_lim):
                wrong.append("%s: limited=%s, table limited=%s" % (name, in_lim, a.limited))
    assert wrong == []


@pytest.mark.parametrize("python", pyreftest.every_version())
def test_no_wrapped_name_in_headers_python_h_skips(python, tmp_path):
    """A header included after Python.h (marshal.h, datetime.h, frameobject.h, ...) must not
    declare or define a wrapped name: the wrapper macro would mangle its declaration."""
    t = load_table()
    version = pyreftest.py_version(python)[:2]
    vt = lambda s: tuple(int(x) for x in s.split("."))
    wrapped = {n for n in t.names() if t.get(n).wrapper and
               (not t.get(n).since or vt(t.get(n).since) <= version) and
               (not t.get(n).until or version < vt(t.get(n).until))}
    inc = pyreftest.pyref_flags(python, "--cflags")[-1][2:]
    src = tmp_path / "inc.c"
    src.write_text("#include <Python.h>\n")
    deps = subprocess.check_output(["gcc", "-M", "-DPYREF_SHIM_OFF", "-I" + inc, str(src)] +
                                   pyreftest.interpreter_info(python).get("cflags", []),
                                   text=True)
    included = {os.path.realpath(p) for p in deps.replace("\\\n", " ").split()[2:]}
    bad = []
    for root, _, files in os.walk(inc):
        if os.path.relpath(root, inc).startswith("internal"):
            continue
        for f in files:
            path = os.path.realpath(os.path.join(root, f))
            if not f.endswith(".h") or path in included:
                continue
            with open(path, errors="replace") as fh:
                text = fh.read()
            for name in wrapped:
                if re.search(r"(PyAPI_FUNC\([^)]*\)\s*|#\s*define\s+)%s\b" % name, text):
                    bad.append("%s in %s" % (name, os.path.relpath(path, inc)))
    assert bad == []
