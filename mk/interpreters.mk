# pyref — `make interpreters`: the interpreters and debugger that Debian 12 does not package
# (Debian unstable's python3.14/3.15 release and debug and its gdb, a free-threaded debug
# 3.13t built from Debian 13's source), prepared once into PYREF_CACHE by
# tools/interpreters.py, which writes PYREF_CACHE/interpreters.json for the tests.
# Included by the Makefile; `make deps` runs it. A part that cannot be had is skipped with
# the reason, never a failed make. `make interpreters-refresh` prepares again from today's
# archives.
PYREF_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/pyref
export PYREF_CACHE

# What the preparation uses (patchelf, xz for the source tarball) and the 3.13t build's
# minimal dependencies: libffi for ctypes, zlib.
DEBS += patchelf xz-utils libffi-dev zlib1g-dev

.PHONY: interpreters interpreters-refresh
interpreters: deps-debs
	@$(PY) tools/interpreters.py --cache "$(PYREF_CACHE)"

interpreters-refresh: deps-debs
	@$(PY) tools/interpreters.py --cache "$(PYREF_CACHE)" --refresh

# `make check-matrix`: what `make check` leaves out of the version matrix (tests/pyreftest.py
# reads PYREF_MATRIX and PYREF_GDB). `make check` runs the representative suites (show,
# history, pystack) on every interpreter of pyreftest.ALL and the other suites on
# pyreftest.CURRENT; this runs (1) every interpreter-parametrized suite on the versions
# outside CURRENT (3.13t, 3.14, 3.14d, 3.15, 3.15d), (2) the gdb suites (show, history, why,
# leaks, owners, watch, pystack) on every version under GDB 18. A missing interpreter or
# GDB 18 skips with its reason.
MATRIX_GDB_SUITES := tests/gdb/test_gdb_show.py tests/gdb/test_gdb_history.py \
	tests/gdb/test_why.py tests/gdb/test_leaks.py tests/gdb/test_owners.py \
	tests/gdb/test_watch.py tests/gdb/test_pystack.py

.PHONY: check-matrix
check-matrix: all
	PYREF_MATRIX=1 $(PY) -m pytest -q -rs -n 2 tests/gdb tests/system tests/test_capi_gen.py
	PYREF_MATRIX=all PYREF_GDB=gdb18 $(PY) -m pytest -q -rs -n 2 $(MATRIX_GDB_SUITES)
