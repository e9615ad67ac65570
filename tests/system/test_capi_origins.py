"""Reference origins: the C-API calls a traced extension makes are recorded
as NEW / BORROW / STEAL with their call site and container, on every interpreter, from a
real core dump; the wrappers keep the calls' exact semantics in C and C++, with and
without PY_SSIZE_T_CLEAN and under Py_LIMITED_API; the PyArg_* format walker finds the
right output pointers."""
import json
import os
import shutil
import subprocess

import pytest

import pyreftest

SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "capi_ext.c")
LINES = pyreftest.marker_lines(SRC)
BY_LINE = {v: k for k, v in LINES.items()}
AUX_CONTAINER = 1

DRIVER = r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
import capi_ext as m
ids = {}
ids["new"] = m.exercise_new()
t = ("t0-" + str(os.getpid()), "t1-" + str(os.getpid()))
l = ["l0-" + str(os.getpid()), "l1-" + str(os.getpid())]
d = {"k": "v-" + str(os.getpid())}
ids["borrow"] = m.exercise_borrow(t, l, d)
ids["borrow"].update(t=id(t), l=id(l), d=id(d))
ids["steal"] = m.exercise_steal()
ids["module"] = id(m)
a, b, c, inner = object(), 10 ** 30, object(), None
m.exercise_parse(a, b)
ids["parse"] = dict(a=id(a), b=id(b))
m.exercise_parse_kw(a, c=c)
ids["parse_kw"] = dict(a=id(a), c=id(c))
inner = (object(), object())
m.exercise_nested(inner, c)
ids["nested"] = dict(inner=id(inner), x=id(inner[0]), y=id(inner[1]), z=id(c))
m.exercise_unpack(a, b)
ids["unpack"] = dict(a=id(a), b=id(b))
dk, dv = "key-" + str(os.getpid()), "value-" + str(os.getpid())
dd = {dk: dv}
ids["out"] = m.exercise_out(dd)
ids["out"].update(d=id(dd), k=id(dk), v=id(dv))
ids["build"] = m.exercise_build()
with open("ids.json", "w") as f:
    json.dump(ids, f)
keep = (t, l, d, a, b, c, inner, dd)
os.abort()
'''


# ---------------------------------------------------------------------------------------
# Records from a real core, per interpreter
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=pyreftest.every_version())
def core_records(request, tmp_path_factory):
    """(records, ids, version): the capi_ext.c records of one crashed run, each as
    (marker, op, api, obj, refcnt, aux) with aux = ((container, kind, value), ...)."""
    python = request.param
    d = tmp_path_factory.mktemp("capi")
    pyreftest.build_ext(SRC, python, str(d), extra_cflags=["-DPY_SSIZE_T_CLEAN"])
    driver = d / "driver.py"
    driver.write_text(DRIVER)
    core, _ = pyreftest.run_to_core(python, [str(driver), str(d)], cwd=str(d))
    with open(d / "ids.json") as f:
        ids = json.load(f)
    ring, site = pyreftest.ring_from_core(core)
    assert ring.errors == [], ring.errors
    got = []
    for r in ring.records:
        s = site(r)
        if s and s[0] == "capi_ext.c" and r.op_name in ("NEW", "BORROW", "STEAL"):
            aux = tuple((a.obj, a.site, a.refcnt) for a in r.aux)
            got.append((BY_LINE.get(s[1]), r.op_name, s[3], r.obj, r.refcnt, aux))
    return got, ids, pyreftest.py_version(python)


def skip_limited_if_free_threaded(python, limited):
    if limited and pyreftest.interpreter_info(python).get("free_threaded"):
        pytest.skip("free-threaded CPython refuses Py_LIMITED_API (#error in its Python.h)")


def find(got, marker, op, obj=None):
    hits = [g for g in got if g[0] == marker and g[1] == op and (obj is None or g[3] == obj)]
    assert hits, "no %s record at @%s for %s; records there: %s" % (
        op, marker, obj, [g for g in got if g[0] == marker])
    return hits


def test_new_records_call_site_and_api(core_records):
    got, ids, _ = core_records
    for marker, key, api in (("new-list", "list", "PyList_New"),
                             ("new-build", "build", "Py_BuildValue"),
                             ("new-unicode", "unicode", "PyUnicode_FromString"),
                             ("new-call", "call", "PyObject_CallFunction")):
        (rec,) = find(got, marker, "NEW", ids["new"][key])
        assert rec[2] == api
        assert rec[5] == (), "NEW carries no container"
    (lst,) = find(got, "new-list", "NEW", ids["new"]["list"])
    assert lst[4] == 1, "a fresh list has one reference at return"


@pytest.mark.parametrize("marker,key,container,index,api", [
    ("borrow-tuple", "tuple_item", "t", 0, "PyTuple_GetItem"),
    ("borrow-list", "list_item", "l", 1, "PyList_GetItem"),
    ("borrow-dict", "dict_item", "d", -1, "PyDict_GetItemString"),
    ("borrow-tuple-macro", "tuple_item_m", "t", 1, "PyTuple_GET_ITEM"),
    ("borrow-list-macro", "list_item_m", "l", 0, "PyList_GET_ITEM"),
    ("borrow-fast", "fast_item", "fast", 1, "PySequence_Fast_GET_ITEM"),
])
def test_borrow_names_its_container(core_records, marker, key, container, index, api):
    got, ids, _ = core_records
    b = ids["borrow"]
    (rec,) = find(got, marker, "BORROW", b[key])
    assert rec[2] == api
    assert rec[5] == ((b[container], AUX_CONTAINER, index),)
    assert rec[4] == 1, "only the container holds it"


@pytest.mark.parametrize("marker,key,container,index,api", [
    ("steal-list", "item_list", "list", 0, "PyList_SetItem"),
    ("steal-tuple", "item_tuple", "tuple", 0, "PyTuple_SetItem"),
    ("steal-list-macro", "item_list_m", "list", 1, "PyList_SET_ITEM"),
    ("steal-tuple-macro", "item_tuple_m", "tuple", 1, "PyTuple_SET_ITEM"),
    ("steal-addobject", "item_module", None, -1, "PyModule_AddObject"),
    ("steal-add", "item_module_add", None, -1, "PyModule_Add"),
])
def test_steal_names_the_taker(core_records, marker, key, container, index, api):
    got, ids, version = core_records
    if marker == "steal-add" and version[:2] < (3, 13):
        pytest.skip("PyModule_Add is new in 3.13")
    s = ids["steal"]
    (rec,) = find(got, marker, "STEAL", s[key])
    assert rec[2] == api
    taker = ids["module"] if container is None else s[container]
    assert rec[5] == ((taker, AUX_CONTAINER, index),)
    assert rec[4] == 2, "count read before the call: the caller's and the test's keep list"


def test_failed_addobject_steals_nothing(core_records):
    got, _, _ = core_records
    assert [g for g in got if g[0] == "addobject-fail"] == []


def test_parse_outputs_are_borrowed_from_the_arguments(core_records):
    got, ids, _ = core_records
    p = ids["parse"]
    (a,) = find(got, "parse", "BORROW", p["a"])
    (b,) = find(got, "parse", "BORROW", p["b"])
    assert a[2] == b[2] == "PyArg_ParseTuple"
    assert a[5][0][1:] == (AUX_CONTAINER, 0) and b[5][0][1:] == (AUX_CONTAINER, 1)
    assert a[5][0][0] == b[5][0][0], "both from the same argument tuple"
    assert len([g for g in got if g[0] == "parse"]) == 2, "absent optional: no record"
    # O! outputs of exercise_borrow's own parse
    bo = ids["borrow"]
    for key, index in (("t", 0), ("l", 1), ("d", 2)):
        (rec,) = find(got, "parse-borrow", "BORROW", bo[key])
        assert rec[5][0][1:] == (AUX_CONTAINER, index)


def test_parse_keywords_come_from_the_kwargs_dict(core_records):
    got, ids, _ = core_records
    p = ids["parse_kw"]
    (a,) = find(got, "parse-kw", "BORROW", p["a"])
    (c,) = find(got, "parse-kw", "BORROW", p["c"])
    assert a[2] == "PyArg_ParseTupleAndKeywords"
    assert a[5][0][1:] == (AUX_CONTAINER, 0)
    assert c[5][0][1:] == (AUX_CONTAINER, -1) and c[5][0][0] != a[5][0][0]
    assert len([g for g in got if g[0] == "parse-kw"]) == 2, "b was not passed"


def test_nested_outputs_name_the_inner_sequence(core_records):
    got, ids, _ = core_records
    n = ids["nested"]
    (x,) = find(got, "parse-nested", "BORROW", n["x"])
    (y,) = find(got, "parse-nested", "BORROW", n["y"])
    (z,) = find(got, "parse-nested", "BORROW", n["z"])
    assert x[5] == ((n["inner"], AUX_CONTAINER, 0),)
    assert y[5] == ((n["inner"], AUX_CONTAINER, 1),)
    assert z[5][0][1:] == (AUX_CONTAINER, 1)


def test_unpack_outputs(core_records):
    got, ids, _ = core_records
    u = ids["unpack"]
    (a,) = find(got, "unpack", "BORROW", u["a"])
    (b,) = find(got, "unpack", "BORROW", u["b"])
    assert a[2] == "PyArg_UnpackTuple"
    assert (a[5][0][1:], b[5][0][1:]) == ((AUX_CONTAINER, 0), (AUX_CONTAINER, 1))
    assert len([g for g in got if g[0] == "unpack"]) == 2


def test_output_arguments(core_records):
    got, ids, version = core_records
    o = ids["out"]
    (k,) = find(got, "dict-next", "BORROW", o["k"])
    (v,) = find(got, "dict-next", "BORROW", o["v"])
    assert k[2] == v[2] == "PyDict_Next"
    assert k[5] == v[5] == ((o["d"], AUX_CONTAINER, -1),)
    assert len([g for g in got if g[0] == "dict-next"]) == 2, "nothing when Next returns 0"
    if version[:2] >= (3, 13):
        (n,) = find(got, "getitemref", "NEW", o["v"])
        assert n[2] == "PyDict_GetItemRef" and n[5] == ()


def test_build_value_n_is_a_steal_by_its_result(core_records):
    """Py_BuildValue's "N" arguments are STEALs (count before the call: the caller's and
    the keep list's), the container the result holding them at their index; "O" records
    nothing (the call INCREFs it); "N" alone is the result itself: no container."""
    got, ids, _ = core_records
    b = ids["build"]
    (n1,) = find(got, "build-tuple", "STEAL", b["n1"])
    assert n1[2] == "Py_BuildValue" and n1[4] == 2
    assert n1[5] == ((b["r1"], AUX_CONTAINER, 0),)
    assert [g for g in got if g[0] == "build-tuple" and g[3] == b["o1"]] == []
    find(got, "build-tuple", "NEW", b["r1"])
    (n2,) = find(got, "build-alone", "STEAL", b["n2"])
    assert n2[5] == () and b["r2"] == b["n2"]
    find(got, "build-alone", "NEW", b["n2"])
    (n3,) = find(got, "build-mixed", "STEAL", b["n3"])
    (n4,) = find(got, "build-mixed", "STEAL", b["n4"])
    assert n3[5] == ((b["r3"], AUX_CONTAINER, 2),)
    assert n4[5] == ((b["r3"], AUX_CONTAINER, -1),), "inside the list: no tuple index"


def test_underscore_calls_record_their_origin(core_records):
    """_PyType_Lookup's result is BORROWed from the type; a miss (NULL) records nothing."""
    got, ids, _ = core_records
    b = ids["build"]
    assert [g for g in got if g[0] == "type-lookup"] == []
    (hit,) = find(got, "type-lookup-hit", "BORROW", b["append"])
    assert hit[2] == "_PyType_Lookup" and hit[5] == ((b["list_type"], AUX_CONTAINER, -1),)


# ---------------------------------------------------------------------------------------
# Exact semantics, at run time, per interpreter and build flavour
# ---------------------------------------------------------------------------------------
FLAVOURS = {
    "c": dict(cc="gcc"),
    "c-ssize-clean": dict(cc="gcc", extra_cflags=["-DPY_SSIZE_T_CLEAN"]),
    "c++-ssize-clean": dict(cc="g++", extra_cflags=["-x", "c++", "-DPY_SSIZE_T_CLEAN"]),
    "c++": dict(cc="g++", extra_cflags=["-x", "c++"]),
    "c-limited": dict(cc="gcc", extra_cflags=["-DPy_LIMITED_API=0x030A0000",
                                              "-DPY_SSIZE_T_CLEAN"]),
}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
@pytest.mark.parametrize("python", pyreftest.interpreters())
def test_wrappers_keep_semantics(python, flavour, tmp_path):
    """capi_ext.semantics(): each argument evaluated once, results and their types as the
    real calls', lvalue macros still lvalues, failed calls unchanged, s# lengths follow
    PY_SSIZE_T_CLEAN."""
    opts = FLAVOURS[flavour]
    if opts["cc"] == "g++" and not shutil.which("g++"):
        pytest.skip("g++ not installed")
    skip_limited_if_free_threaded(python, "limited" in flavour)
    pyreftest.build_ext(SRC, python, str(tmp_path), **opts)
    code = "import sys; sys.path.insert(0, %r); import capi_ext; capi_ext.semantics()" % (
        str(tmp_path))
    p = subprocess.run([python, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------------------------------
# Compile matrix: no new diagnostic anywhere
# ---------------------------------------------------------------------------------------
MATRIX = [(lang, clean, limited) for lang in ("c", "c++") for clean in (False, True)
          for limited in (False, True)]


def compile_ext(python, lang, clean, limited, capi, tmp_path):
    cc = "gcc" if lang == "c" else "g++"
    flags = ["-x", lang, "-c", "-O1", "-Wall", "-Wextra", "-Werror"] if capi else \
        ["-x", lang, "-fsyntax-only", "-Wall", "-Wextra", "-Werror"]
    if lang == "c":
        flags.append("-Wshadow")   # nested wrappers use distinct locals (__COUNTER__)
    if clean:
        flags.append("-DPY_SSIZE_T_CLEAN")
    if limited:
        flags.append("-DPy_LIMITED_API=0x030A0000")
    if not capi:
        flags.append("-DPYREF_CAPI_OFF")
    out = tmp_path / ("ext-%s-%d-%d-%d.o" % (lang, clean, limited, capi))
    cmd = [cc] + flags + pyreftest.pyref_flags(python, "--cflags") + \
        pyreftest.interpreter_info(python).get("cflags", []) + [SRC, "-o", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.mark.parametrize("lang,clean,limited", MATRIX,
                         ids=["%s%s%s" % (l, "-clean" if c else "", "-limited" if m else "")
                              for l, c, m in MATRIX])
@pytest.mark.parametrize("python", pyreftest.interpreters())
def test_compile_matrix(python, lang, clean, limited, tmp_path):
    """capi_ext.c compiles warning-free (-Wall -Wextra -Werror, -Wshadow in C) through the
    shim in every configuration, exactly as it does with PYREF_CAPI_OFF."""
    if lang == "c++" and not shutil.which("g++"):
        pytest.skip("g++ not installed")
    skip_limited_if_free_threaded(python, limited)
    pyreftest.ensure_runtime()
    plain = compile_ext(python, lang, clean, limited, False, tmp_path)
    assert plain.returncode == 0, plain.stderr
    traced = compile_ext(python, lang, clean, limited, True, tmp_path)
    assert traced.returncode == 0, traced.stderr


def bound_checks():
    """C source: for each function wrapper that binds arguments (container, stolen or output
    arguments), a call with the reference data's parameter types, and a check that the
    wrapped call has the type of the real one (`(NAME)(...)` bypasses the macro)."""
    from pyref.rules import capi
    out = ["#include <Python.h>", "#ifdef __cplusplus", "#include <type_traits>",
           "#define SAME(a, b) __extension__({ typedef decltype(a) ta_; "
           "typedef decltype(b) tb_; std::is_same<ta_, tb_>::value; })",
           "#else", "#define SAME(a, b) __builtin_types_compatible_p(__typeof__(a), "
           "__typeof__(b))", "#endif", "int checked;"]
    for name in capi.names():
        a = capi.get(name)
        if a.wrapper != "function" or not (
                a.steals or a.outs or (a.container and a.returns == "borrowed")):
            continue
        conds = ["1"]
        if a.since:
            conds.append("PY_VERSION_HEX >= 0x03%02X0000" % int(a.since.split(".")[1]))
        if a.until:
            conds.append("PY_VERSION_HEX < 0x03%02X0000" % int(a.until.split(".")[1]))
        if not a.limited:
            conds.append("!defined(Py_LIMITED_API)")
        elif a.limited != "3.10":
            conds.append("(!defined(Py_LIMITED_API) || Py_LIMITED_API + 0 >= 0x03%02X0000)"
                         % int(a.limited.split(".")[1]))
        decl = ", ".join("%s%sp%d" % (t, "" if t.endswith("*") else " ", i)
                         for i, (t, _) in enumerate(a.params))
        args = ", ".join("p%d" % i for i in range(len(a.params)))
        out += ["#if %s" % " && ".join(conds),
                "void check_%s(%s)" % (name, decl), "{",
                "    checked += SAME(%s(%s), (%s)(%s));" % (name, args, name, args),
                "    %s(%s);" % (name, args), "}", "#endif"]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("lang,limited", [("c", False), ("c++", False), ("c", True),
                                          ("c++", True)])
@pytest.mark.parametrize("python", pyreftest.interpreters())
def test_bound_wrappers_typecheck(python, lang, limited, tmp_path):
    """Every wrapper that binds arguments accepts the real parameter types (C++ is strict:
    a wrong type in the reference data fails here) and yields the real call's type."""
    if lang == "c++" and not shutil.which("g++"):
        pytest.skip("g++ not installed")
    skip_limited_if_free_threaded(python, limited)
    src = tmp_path / "bound.c"
    src.write_text(bound_checks())
    flags = ["-x", lang, "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
             "-Wno-unused-parameter", "-Wno-deprecated-declarations", "-DPY_SSIZE_T_CLEAN"]
    if limited:
        major, minor, _ = pyreftest.py_version(python)
        flags.append("-DPy_LIMITED_API=0x%02X%02X0000" % (major, minor))
    cc = "gcc" if lang == "c" else "g++"
    p = subprocess.run([cc] + flags + pyreftest.pyref_flags(python, "--cflags") +
                       pyreftest.interpreter_info(python).get("cflags", []) + [str(src)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]


# ---------------------------------------------------------------------------------------
# The PyArg_* format walker
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def walker(tmp_path_factory):
    python = "/usr/bin/python3.11d"
    d = tmp_path_factory.mktemp("walker")
    pyreftest.build_ext(SRC, python, str(d), extra_cflags=["-DPY_SSIZE_T_CLEAN"])

    def walk(formats):
        code = ("import sys, json; sys.path.insert(0, %r); import capi_ext; "
                "print(json.dumps([capi_ext.argfmt(f) for f in json.loads(sys.argv[1])]))"
                % str(d))
        out = subprocess.check_output([python, "-c", code, json.dumps(formats)], text=True)
        return [None if r is None else [tuple(x) for x in r] for r in json.loads(out)]
    return walk


# (format, [(pointer slot of the output, argument, position in "(...)", depth)] or None)
WALKS = [
    ("", []),
    ("O", [(0, 0, -1, 0)]),
    ("OO", [(0, 0, -1, 0), (1, 1, -1, 0)]),
    ("O!O", [(1, 0, -1, 0), (2, 1, -1, 0)]),
    ("O&O", [(2, 1, -1, 0)]),
    ("SYU", [(0, 0, -1, 0), (1, 1, -1, 0), (2, 2, -1, 0)]),
    ("s#O", [(2, 1, -1, 0)]),
    ("s*z#z*y#y*yszO", [(10, 8, -1, 0)]),
    ("es#O", [(3, 1, -1, 0)]),
    ("et#esetO", [(7, 3, -1, 0)]),
    ("w*O", [(1, 1, -1, 0)]),
    ("u#ZZ#uO", [(6, 4, -1, 0)]),
    ("bBhHiIlkLKncCfdDpO", [(17, 17, -1, 0)]),
    ("O|O:name", [(0, 0, -1, 0), (1, 1, -1, 0)]),
    ("O|$O", [(0, 0, -1, 0), (1, 1, -1, 0)]),
    ("O;message O", [(0, 0, -1, 0)]),
    ("O:fO", [(0, 0, -1, 0)]),
    ("(OO)O", [(0, 0, 0, 1), (1, 0, 1, 1), (2, 1, -1, 0)]),
    ("(iO)(O!i)", [(1, 0, 1, 1), (3, 1, 0, 1)]),
    ("((OO)O)O", [(0, 0, -1, 2), (1, 0, -1, 2), (2, 0, 1, 1), (3, 1, -1, 0)]),
    ("i(s#(O&O)O)|O", [(5, 1, -1, 2), (6, 1, 2, 1), (7, 2, -1, 0)]),
    ("O&O&O!", [(5, 2, -1, 0)]),
    ("Q", None),
    ("eO", None),
    ("wO", None),
    ("O!X", None),
]


def test_argfmt_walker(walker):
    got = walker([f for f, _ in WALKS])
    for (fmt, want), have in zip(WALKS, got):
        assert have == want, "format %r" % fmt
