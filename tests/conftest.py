"""Fixtures shared by pyref's tests, and the tiers.

The tiers are folders: tests/unit (gdb-free, seconds: `make unit`), tests/gdb (gdb -batch
on real builds and cores), tests/system (slow: the kill campaign, the build routes,
install, the C-API compile matrix; marked `slow`, so `pytest -m "not slow" tests` leaves
them out). `make check` runs them all.

Fixtures:
- `python`: one module-scoped run per supported interpreter (pyreftest.interpreters());
- `build_extension(src, python, cflags=(), traced=True)`: a built extension module for an
  interpreter, built once per session: a Built (python, moddir, version);
- `routes_core`: one crashed python3.11d running the routes extension (its core, and the
  address of the object it printed), for the tests that need any real core.
"""
import collections
import os
import re

import pytest

import pyreftest

Built = collections.namedtuple("Built", "python moddir version")
Built.__doc__ = """An extension built for one interpreter: the interpreter, the directory
holding the module, and pyreftest.py_version(python)."""

ROUTES_PYTHON = "/usr/bin/python3.11d"


def pytest_collection_modifyitems(config, items):
    system = os.path.join(os.path.dirname(os.path.abspath(__file__)), "system") + os.sep
    for item in items:
        if str(item.fspath).startswith(system):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module", params=pyreftest.interpreters())
def python(request):
    return request.param


@pytest.fixture(scope="session")
def build_extension(tmp_path_factory):
    built = {}

    def build(src, python, cflags=(), traced=True):
        key = (src, python, tuple(cflags), traced)
        if key not in built:
            d = str(tmp_path_factory.mktemp(os.path.splitext(os.path.basename(src))[0]))
            pyreftest.build_ext(src, python, d, traced=traced, extra_cflags=cflags)
            built[key] = Built(python, d, pyreftest.py_version(python))
        return built[key]
    return build


@pytest.fixture(scope="session")
def routes_core(build_extension, tmp_path_factory):
    """(core path, object address) of python3.11d crashed by the routes driver."""
    built = build_extension(pyreftest.ROUTES_SRC, ROUTES_PYTHON)
    cwd = tmp_path_factory.mktemp("routes-core")
    path, proc = pyreftest.run_to_core(ROUTES_PYTHON, pyreftest.routes_driver_args(
        built.moddir), cwd=str(cwd))
    return path, re.search(r"^obj (0x[0-9a-f]+)$", proc.stdout, re.M).group(1)

# Test suites that are fixtures of other tests (run under pyref-run by
# tests/system/test_leak_check.py), not tests of pyref: their extension is built there.
collect_ignore_glob = ["ext/*/suite/*"]
