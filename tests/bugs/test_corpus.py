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

# What pyref blames on correct code today (python3.11d), and why (tests/bugs/BASELINE.md):
# nothing. A row that starts to be falsely blamed fails; one listed here must still be.
KNOWN_FALSE_BLAME = {}


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
