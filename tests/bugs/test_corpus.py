"""The bug corpus as a test (the full scored run is `make diagnose`): every row of
tests/bugs/cases, built traced for python3.11d and run to its observation point, must
reproduce (crash where it crashes, stop where it stops, its driver not failing), and
pyref must name no culprit on correct code: no false blame (tests/bugs/README.md).

A right, wrong or unknown answer on a real bug passes here; a false blame fails. The
rows pyref falsely blames today are listed below as strict expected failures: each must
still fail with a false blame, so a fix shows up as XPASS and the row leaves the list.
"""
import importlib.util
import os

import pytest

_spec = importlib.util.spec_from_file_location(
    "bugs_run", os.path.join(os.path.dirname(os.path.abspath(__file__)), "run.py"))
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)
pyreftest = run.pyreftest        # tests/pyreftest.py, on the path run.py set

PYTHON = run.DEFAULT_PYTHON

# What pyref blames on correct code today (python3.11d), and why (tests/bugs/BASELINE.md).
KNOWN_FALSE_BLAME = {
    # a struct field's reference released in tp_clear/tp_dealloc called a double release
    "ok_type_fields": "double-release on tp_init's Py_XSETREF of a field",
    "ok_encoder:live": "double-release on a helper's release of a chunk the list holds",
    "ok_encoder:gcore": "double-release on a helper's release of a chunk the list holds",
    "crash_null_field": "double-release on tp_dealloc's Py_CLEAR of an interned name",
    "double_clear_dealloc/fixed": "double-release on tp_clear's Py_CLEAR",
    "uaf_struct_field_reentrant/fixed": "double-release on Py_SETREF of a field",
    # a small int returned to the caller counted as leaked
    "leak_continue": "leak row at the small-int return",
    "leak_continue/fixed": "leak row at the small-int return",
    "leak_iter_next": "leak row at the small-int return",
    "leak_iter_next/fixed": "leak row at the small-int return",
    "leak_none_result": "leak row at the small-int return",
    "leak_none_result/fixed": "leak row at the small-int return",
    "return_none_no_incref/fixed": "leak row at the small-int return",
    "uaf_dict_handler/fixed": "leak row at the small-int return",
    "tp_new_borrowed_field/fixed": "leak row at a small-int call result returned",
    # a cache hit's INCREF of a returned result called the leak
    "leak_surplus_incref": "leak row at the cache hit's Py_INCREF, not the surplus one",
    "leak_surplus_incref/fixed": "leak row at the cache hit's Py_INCREF",
}


class FalseBlame(AssertionError):
    """pyref named a culprit on correct code."""


def _params():
    out = []
    for row in run.all_rows():
        marks = ()
        if row.name in KNOWN_FALSE_BLAME:
            marks = pytest.mark.xfail(strict=True, raises=FalseBlame,
                                      reason="known false blame: " +
                                      KNOWN_FALSE_BLAME[row.name])
        out.append(pytest.param(row, id=row.name, marks=marks))
    return out


@pytest.fixture(scope="module")
def info():
    return pyreftest.py_version(PYTHON)


def test_known_rows_exist():
    names = {r.name for r in run.all_rows()}
    assert set(KNOWN_FALSE_BLAME) <= names, set(KNOWN_FALSE_BLAME) - names


@pytest.mark.parametrize("row", _params())
def test_no_false_blame(row, info):
    res = run.run_row(row, PYTHON, info)
    if res["score"] == "skip":
        pytest.skip(res["error"])
    assert res["score"] != "error", "%s did not reproduce: %s" % (row.name, res["error"])
    assert res["score"] in ("ok", "wrong", "unknown", "false-blame"), res
    if res["score"] == "false-blame":
        raise FalseBlame("%s: pyref says %s at %s, a line of correct code (claims: %s)" % (
            row.name, res["verdict"], res["line"], res["claims"]))
