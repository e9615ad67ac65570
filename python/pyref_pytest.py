"""pyref's pytest plugin: marks each test's start and end in the pyref ring (pyref_mark, by
ctypes: python/pyref_mark.py), so that `pyref leaks` and bin/pyref-run name, for each leaked
reference, the test that acquired it. Loaded with `-p pyref_pytest` (bin/pyref-run loads
it through PYTEST_PLUGINS); needs nothing beyond pytest. Without a traced extension in the
process it writes nothing and changes nothing.

Marks (docs/ring-format.md, "Marks"): `test:start NODEID` before a test's setup,
`test:end NODEID` after its teardown; with --pyref-repeat N (or $PYREF_REPEAT, which
pyref-run --repeat sets) each test runs N times in a row, its marks saying `NODEID #K`. On
interpreters whose singletons are counted (<= 3.11), `test:drift NAME=DELTA...` before the
end mark gives the change of sys.getrefcount() of None, True, False, Ellipsis and
NotImplemented over the test's call, when one changed.
"""
import functools
import inspect
import os

import pytest
from _pytest.runner import runtestprotocol

import pyref_mark

def pytest_addoption(parser):
    group = parser.getgroup("pyref", "pyref: leaked references by test")
    group.addoption("--pyref-repeat", type=int, metavar="N",
                    default=int(os.environ.get("PYREF_REPEAT") or 1),
                    help="run each test N times: pyref reports what grows with N "
                         "(default $PYREF_REPEAT or 1)")


@pytest.hookimpl(hookwrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """The singletons' counts over the test function's own call (not pytest's reports,
    setup or teardown, which move them by a few): the function is wrapped for the call,
    and the drift kept on the item for the end mark."""
    fn = pyfuncitem.obj
    if not pyref_mark.SINGLETONS or not pyref_mark.available() or \
            inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
        yield
        return

    @functools.wraps(fn)
    def measured(*args, **kwargs):
        before = pyref_mark.singleton_counts()
        result = fn(*args, **kwargs)
        after = pyref_mark.singleton_counts()
        # the result held here is one reference more, not the test's
        after = [a - (result is obj) for a, (_, obj) in zip(after, pyref_mark.SINGLETONS)]
        pyfuncitem._pyref_drift = pyref_mark.drift_label(before, after)
        return result

    pyfuncitem.obj = measured
    try:
        yield
    finally:
        pyfuncitem.obj = fn


def _one_run(item, nextitem, label):
    pyref_mark.mark("test:start " + label)
    item._pyref_drift = ""
    runtestprotocol(item, log=True, nextitem=nextitem)
    if item._pyref_drift:
        pyref_mark.mark("test:drift " + item._pyref_drift)
    pyref_mark.mark("test:end " + label)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if item.config.getoption("pyref_repeat") > 1:
        yield          # _repeat_protocol (tryfirst) ran the test
        return
    pyref_mark.mark("test:start " + item.nodeid)
    item._pyref_drift = ""
    yield
    if item._pyref_drift:
        pyref_mark.mark("test:drift " + item._pyref_drift)
    pyref_mark.mark("test:end " + item.nodeid)


class _Repeat:
    """Runs each test N times in a row, as pytest's own protocol does once (reports are
    logged for each run); the module and class fixtures stay up between runs."""

    def __init__(self, n):
        self.n = n

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for k in range(1, self.n + 1):
            _one_run(item, item if k < self.n else nextitem, "%s #%d" % (item.nodeid, k))
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True


def pytest_configure(config):
    n = config.getoption("pyref_repeat")
    if n < 1:
        raise pytest.UsageError("--pyref-repeat wants a positive number, not %d" % n)
    if n > 1:
        config.pluginmanager.register(_Repeat(n), "pyref_repeat")
