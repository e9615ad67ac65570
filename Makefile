# pyref — build, test and benchmark. `make check` is the test command (CI runs it).
CC      ?= gcc
CFLAGS  ?= -O2 -g
PY      := /usr/bin/python3
BUILD   := build
CH      := c_helpers
WARN    := -Wall -Wextra -Wno-missing-field-initializers
RT_CFLAGS := $(CFLAGS) $(WARN) -std=gnu11 -fPIC -fvisibility=default -I$(CH)/include -pthread

# Debian packages a fresh Debian 12 lacks for building and testing.
DEBS := gcc g++ make gdb binutils python3 python3.11-dbg python3.11-dev python3-pytest \
        python3-pytest-xdist python3-setuptools procps meson ninja-build pkgconf python3-mesonpy python3-pip

.PHONY: all deps check test ctest pytest bench clean demo
all: $(BUILD)/libpyref.a $(BUILD)/libpyref.so

$(BUILD):
	@mkdir -p $@

RT_OBJS := $(BUILD)/ring.o $(BUILD)/frees.o $(BUILD)/context.o
$(BUILD)/%.o: $(CH)/%.c $(CH)/include/pyref/ring.h $(CH)/include/pyref/hooks.h | $(BUILD)
	$(CC) $(RT_CFLAGS) -c $< -o $@

$(BUILD)/libpyref.a: $(RT_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libpyref.so: $(RT_OBJS)
	$(CC) -shared -pthread -Wl,-soname,libpyref.so -o $@ $^ -ldl

# Idempotent and quiet when everything is there; apt-get only for what is missing.
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "make deps: installing $$missing"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# C unit tests of the ring (tests/c/*.c), then the gdb/interpreter tests (pytest).
CTESTS := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/*.c))
$(BUILD)/tests/%: tests/c/%.c tests/c/check.h $(BUILD)/libpyref.a $(CH)/include/pyref/ring.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -std=gnu11 -I$(CH)/include -pthread $< $(BUILD)/libpyref.a -o $@

ctest: $(CTESTS)
	@set -e; for t in $(CTESTS); do echo "== $$t"; $$t; done

pytest: all
	$(PY) -m pytest -q -n 2 tests

test: ctest pytest

check: deps
	$(MAKE) all
	$(MAKE) test

bench: all
	$(PY) bench/run.py

# Crash each demo scenario and print pyref's post-mortem report (PYTHON=... to choose).
demo: all
	@demo/run.sh $(or $(PYTHON),python3.11d)

clean:
	rm -rf $(BUILD)

include mk/install.mk
