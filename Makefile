# pyref — build, test and benchmark. `make check` is the test command (CI runs it).
CC      ?= gcc
CFLAGS  ?= -O2 -g
PY      := /usr/bin/python3
BUILD   := build
CH      := c_helpers
WARN    := -Wall -Wextra -Wno-missing-field-initializers
RT_CFLAGS := $(CFLAGS) $(WARN) -std=gnu11 -fPIC -fvisibility=default -I$(CH)/include -pthread

# Debian packages a fresh Debian 12 lacks for building and testing.
DEBS := gcc g++ make gdb binutils python3 python3.11-dbg python3.11-dev python3-dev \
        python3-pytest python3-pytest-xdist python3-setuptools procps meson ninja-build pkgconf \
        python3-mesonpy python3-pip valgrind rr

.PHONY: all deps deps-debs check test ctest pytest unit bench bench-compare clean demo capi diagnose compare-tools demo-leaks bench-pyref-run
all: $(BUILD)/libpyref.a $(BUILD)/libpyref.so

$(BUILD):
	@mkdir -p $@

RT_OBJS := $(BUILD)/ring.o $(BUILD)/hot.o $(BUILD)/frees.o $(BUILD)/context.o
$(BUILD)/%.o: $(CH)/%.c $(CH)/include/pyref/ring.h $(CH)/include/pyref/hooks.h | $(BUILD)
	$(CC) $(RT_CFLAGS) -c $< -o $@

$(BUILD)/libpyref.a: $(RT_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libpyref.so: $(RT_OBJS)
	$(CC) -shared -pthread -Wl,-soname,libpyref.so -o $@ $^ -ldl

# Idempotent and quiet when everything is there; apt-get only for what is missing, then
# the interpreters of mk/interpreters.mk.
deps: deps-debs interpreters

deps-debs:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "make deps: installing $$missing"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# C unit tests of the ring (tests/c/*.c), then every pytest tier: tests/unit (gdb-free,
# seconds), tests/gdb (gdb -batch on real builds and cores), tests/system (slow: kill
# campaign, build routes, install, C-API compile matrix). `make unit` is the edit loop.
CTESTS := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/*.c))
$(BUILD)/tests/%: tests/c/%.c tests/c/check.h $(BUILD)/libpyref.a $(CH)/include/pyref/ring.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(WARN) -std=gnu11 -I$(CH)/include -pthread $< $(BUILD)/libpyref.a -o $@

ctest: $(CTESTS)
	@set -e; for t in $(CTESTS); do echo "== $$t"; $$t; done

pytest: all
	$(PY) -m pytest -q -n 2 tests

unit:
	$(PY) -m pytest -q tests/unit

test: ctest pytest

check: deps
	$(MAKE) all
	$(MAKE) test

# Every table of bench/RESULTS.md (~15 min): the recorded transition against an untraced
# one, the workload beside ASan and valgrind, the GDB side (history, leaks, scan).
# `make bench UPDATE=1` also rewrites the tables in bench/RESULTS.md.
BENCH_FLAGS := $(if $(UPDATE),--update)
bench: all
	$(PY) bench/run.py $(BENCH_FLAGS)
	$(PY) bench/compare.py --kinds --callgrind --rounds 21 $(BENCH_FLAGS)
	$(PY) bench/gdb_bench.py $(BENCH_FLAGS)

# pyref vs untraced, ASan, valgrind, python3.11d on one workload (~2-3.5 min)
bench-compare: all
	$(PY) bench/compare.py

# Crash each demo scenario and print pyref's post-mortem report (PYTHON=... to choose).
# The README's first command: installs what it needs first (the Debian packages of `make
# deps`; not the extra interpreters of `make interpreters`, which the demo does not run).
demo: deps-debs
	@$(MAKE) -s --no-print-directory all
	@demo/run.sh $(or $(PYTHON),python3.11d)

# A small leaky package (demo/leaks) and its tests under bin/pyref-run: which test leaks
# from which line, what grows with --repeat 3, the fixed build passing. PYTHON=... to choose.
demo-leaks: deps-debs
	@$(MAKE) -s --no-print-directory all
	@demo/leaks/run.sh $(or $(PYTHON),python3.11d)

# pyref-run's overhead against the bare run on the project's test extensions (~3 min)
bench-pyref-run: all
	$(PY) bench/pyref_run_bench.py

# Regenerates the C-API wrappers (c_helpers/shim/pyref_capi.h) and their table
# (gdbext/pyref/rules/_capi_data.py) from the inputs in c_helpers/capi/;
# tests/test_capi_gen.py checks that the committed files are what this writes.
capi:
	$(PY) $(CH)/capi/gen_capi.py

# Score pyref on the bug corpus (tests/bugs/README.md): one line per case (expected,
# verdict, line, ok / wrong / unknown / false-blame), then totals. PYTHON=... to choose.
diagnose: all
	$(PY) tests/bugs/run.py $(if $(PYTHON),--python $(PYTHON))

# pyref, ASan and valgrind on the same corpus: the markdown table of tests/bugs/README.md.
compare-tools: all
	$(PY) tests/bugs/compare_tools.py $(if $(PYTHON),--python $(PYTHON))

clean:
	rm -rf $(BUILD)

include mk/install.mk
include mk/interpreters.mk

# ---- reliability (docs/reliability.md) ---------------------------------------------------
# Sanitizer builds: the runtime and every C unit test built with AddressSanitizer + UBSan
# (build/asan) or ThreadSanitizer (build/tsan), then run. tsan also runs the kill-test
# writer on 8 threads for 3 s, without and with a GIL-like mutex, and skips test_ring_fork:
# TSan cannot start threads in the child of a multi-threaded fork. Races that exist by
# design are listed, with the reason, in tests/c/tsan.supp.
SAN_SRCS     := $(patsubst $(BUILD)/%.o,$(CH)/%.c,$(RT_OBJS))
SAN_CFLAGS   := -O1 -g -fno-omit-frame-pointer $(WARN) -std=gnu11 -I$(CH)/include -pthread
SAN_asan     := -fsanitize=address,undefined -fno-sanitize-recover=all
SAN_tsan     := -fsanitize=thread -Wno-tsan
SANENV_asan  := ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
SANENV_tsan  := TSAN_OPTIONS=suppressions=$(CURDIR)/tests/c/tsan.supp:history_size=7
SANSKIP_tsan := test_ring_fork

.PHONY: asan tsan fuzz killtest
$(BUILD)/asan/libpyref.a $(BUILD)/tsan/libpyref.a: $(BUILD)/%/libpyref.a: $(SAN_SRCS) \
        $(wildcard $(CH)/include/pyref/*.h)
	@mkdir -p $(@D)/obj
	@set -e; for s in $(SAN_SRCS); do echo "  CC [$*] $$s"; \
	    $(CC) $(SAN_CFLAGS) $(SAN_$*) -fPIC -c $$s -o $(@D)/obj/$$(basename $$s .c).o; done
	rm -f $@ && ar rcs $@ $(@D)/obj/*.o

asan tsan: %: $(BUILD)/%/libpyref.a
	@set -e; mkdir -p $(BUILD)/$*/tests; \
	for src in tests/c/test_*.c; do \
	    $(CC) $(SAN_CFLAGS) $(SAN_$*) $$src $(BUILD)/$*/libpyref.a \
	        -o $(BUILD)/$*/tests/$$(basename $$src .c); done; \
	fail=0; for src in tests/c/test_*.c; do n=$$(basename $$src .c); \
	    case " $(SANSKIP_$*) " in *" $$n "*) echo "== $$n: not run under $*"; continue;; esac; \
	    echo "== $(BUILD)/$*/tests/$$n"; env $(SANENV_$*) $(BUILD)/$*/tests/$$n || fail=1; done; \
	if [ $* = tsan ]; then \
	    $(CC) $(SAN_CFLAGS) $(SAN_tsan) tests/c/progs/killer.c $(BUILD)/tsan/libpyref.a \
	        -o $(BUILD)/tsan/killer; \
	    for m in "" gil; do echo "== $(BUILD)/tsan/killer 8 $$m for=3"; \
	        env $(SANENV_tsan) PYREF_RING_RECORDS=256 $(BUILD)/tsan/killer 8 $$m for=3 \
	            >/dev/null || fail=1; done; \
	fi; \
	[ $$fail = 0 ] && echo "$*: all passed" || { echo "$*: FAILED" >&2; exit 1; }

# The decoder fuzz at length: FUZZ_CASES (1,000,000) cases from FUZZ_SEED, each case
# asserted under 1 s; a failure prints the seed and case to replay.
FUZZ_CASES ?= 1000000
fuzz:
	$(PY) tests/unit/fuzz_decode.py $(FUZZ_CASES) $(if $(FUZZ_SEED),--seed $(FUZZ_SEED))

# The full kill campaign (make check runs 1,200 kill points of it): writers on 1, 2 and
# 8 threads killed with SIGKILL, SIGSEGV and SIGABRT until KILL_POINTS kill points, then
# 600 forks while threads write; asserts 0 wrong records and exact accounting, prints the
# figures of docs/reliability.md.
KILL_POINTS ?= 10000
killtest: all
	$(PY) tests/system/test_kill.py $(KILL_POINTS)
