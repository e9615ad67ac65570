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
