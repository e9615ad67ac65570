# pyref — `make install` and `make uninstall`. Included by the Makefile (at its end).
#
#   make install   [PREFIX=/usr/local] [DESTDIR=staging-root]
#   make uninstall [PREFIX=/usr/local] [DESTDIR=staging-root]
#
# The layout is fixed relative to PREFIX, because the installed pyref-config and
# pyref-postmortem find everything relative to their own directory (PREFIX/bin/..):
#
#   bin/pyref-config, bin/pyref-postmortem, bin/pyref-run
#   include/pyref/shim/*.h        the Python.h shim (first on the include path)
#   include/pyref/*.h             the runtime's public headers
#   lib/libpyref.so, lib/libpyref.a
#   lib/libpyref.so-gdb.py        GDB auto-load hook: loads pyref when libpyref.so is mapped
#   lib/pkgconfig/pyref.pc        for meson's dependency('pyref') and pkg-config users
#   share/pyref/gdbext/           the GDB extension: pyref-gdb.py and the pyref package
#                                 (with its subpackages), pyref-run's pyref-run-gdb.py
#   share/pyref/python/           pyref_mark.py and the pytest plugin pyref_pytest.py
#                                 (pyref-run puts it on the program's PYTHONPATH)
#   share/pyref/VERSION
#   share/doc/pyref/              README.md, ring-format.md
#
# DESTDIR stages the files for packaging; the paths written into pyref.pc are PREFIX's.
PREFIX      ?= /usr/local
DESTDIR     ?=
BUILD       ?= build
CH          ?= c_helpers
bindir      := $(PREFIX)/bin
includedir  := $(PREFIX)/include
libdir      := $(PREFIX)/lib
pkgconfigdir := $(libdir)/pkgconfig
datadir     := $(PREFIX)/share
pyrefdatadir := $(datadir)/pyref
docdir      := $(datadir)/doc/pyref
INSTALL     ?= install

PYREF_VERSION := $(shell sed -n 's/^const char pyref_version\[\] = "\(.*\)";/\1/p' $(CH)/ring.c)

.PHONY: install uninstall install-check-prefix

install-check-prefix:
	@case "$(PREFIX)" in /?*) ;; *) \
	    echo "make: PREFIX must be an absolute path, not '$(PREFIX)'" >&2; exit 2 ;; esac
	@[ -n "$(PYREF_VERSION)" ] || \
	    { echo "make: no pyref_version in $(CH)/ring.c" >&2; exit 2; }

install: install-check-prefix $(BUILD)/libpyref.a $(BUILD)/libpyref.so
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(includedir)/pyref/shim \
	    $(DESTDIR)$(pkgconfigdir) $(DESTDIR)$(pyrefdatadir)/gdbext/pyref $(DESTDIR)$(docdir) \
	    $(DESTDIR)$(pyrefdatadir)/python
	$(INSTALL) -m 755 bin/pyref-config bin/pyref-postmortem bin/pyref-run $(DESTDIR)$(bindir)/
	$(INSTALL) -m 644 $(CH)/shim/*.h $(DESTDIR)$(includedir)/pyref/shim/
	$(INSTALL) -m 644 $(CH)/include/pyref/*.h $(DESTDIR)$(includedir)/pyref/
	$(INSTALL) -m 644 $(BUILD)/libpyref.a $(DESTDIR)$(libdir)/libpyref.a
	$(INSTALL) -m 755 $(BUILD)/libpyref.so $(DESTDIR)$(libdir)/libpyref.so
	$(INSTALL) -m 644 gdbext/libpyref.so-gdb.py $(DESTDIR)$(libdir)/libpyref.so-gdb.py
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(PYREF_VERSION)|g' pyref.pc.in \
	    > $(DESTDIR)$(pkgconfigdir)/pyref.pc
	chmod 644 $(DESTDIR)$(pkgconfigdir)/pyref.pc
	$(INSTALL) -m 644 gdbext/pyref-gdb.py gdbext/pyref-run-gdb.py $(DESTDIR)$(pyrefdatadir)/gdbext/
	$(INSTALL) -m 644 python/pyref_mark.py python/pyref_pytest.py $(DESTDIR)$(pyrefdatadir)/python/
	cd gdbext && for f in $$(find pyref -name '*.py' | sort); do \
	    $(INSTALL) -D -m 644 $$f $(DESTDIR)$(pyrefdatadir)/gdbext/$$f || exit 1; done
	echo "$(PYREF_VERSION)" > $(DESTDIR)$(pyrefdatadir)/VERSION
	$(INSTALL) -m 644 README.md docs/ring-format.md $(DESTDIR)$(docdir)/

# Removes exactly what install puts there; directories that are pyref's alone go whole
# (with the __pycache__ that GDB's Python may have written into share/pyref/gdbext).
uninstall: install-check-prefix
	rm -f $(DESTDIR)$(bindir)/pyref-config $(DESTDIR)$(bindir)/pyref-postmortem \
	    $(DESTDIR)$(bindir)/pyref-run
	rm -f $(DESTDIR)$(libdir)/libpyref.a $(DESTDIR)$(libdir)/libpyref.so \
	    $(DESTDIR)$(libdir)/libpyref.so-gdb.py $(DESTDIR)$(pkgconfigdir)/pyref.pc
	rm -rf $(DESTDIR)$(includedir)/pyref $(DESTDIR)$(pyrefdatadir) $(DESTDIR)$(docdir)
