#!/usr/bin/env python3
"""gen_capi.py — generate pyref's C-API origin wrappers and their semantics table.

Reads CPython's reference data (Doc/data/refcounts.dat of 3.11 and of main, vendored in
c_helpers/capi/data/) and the curated corrections in c_helpers/capi/capi_overrides.txt,
and writes

  c_helpers/shim/pyref_capi.h        macros that wrap the C-API calls whose reference
                                     semantics matter, so a traced extension records NEW /
                                     BORROW / STEAL (docs/ring-format.md) at each call site;
                                     the helpers they call are c_helpers/shim/pyref_capi_prelude.h
  gdbext/pyref/rules/_capi_data.py   the same knowledge as data for `pyref explain` (read
                                     through gdbext/pyref/rules/capi.py): for each API what it
                                     returns, what it steals, the caller's rule.

Usage:  python3 c_helpers/capi/gen_capi.py [--data DIR] [--overrides FILE]
                                           [--header FILE] [--table FILE] [--list]
        (`make capi` runs it with the defaults: the inputs and outputs in the tree.)
Deterministic: the same inputs give byte-identical outputs (tests/test_capi_gen.py checks
the committed files). Standard library only.

The stages, one module each: refdata.py (the model; reading refcounts.dat and the
overrides), decide.py (how each name is wrapped, the caller's rule), emit_header.py and
emit_table.py (the two outputs).
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the sources of the tree

from decide import decide, describe  # noqa: E402 (after the bytecode switch)
from emit_header import guard, header  # noqa: E402
from emit_table import table  # noqa: E402
from refdata import GenError, load  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DATA = os.path.join(HERE, "data")
DEFAULT_OVERRIDES = os.path.join(HERE, "capi_overrides.txt")
DEFAULT_HEADER = os.path.join(ROOT, "c_helpers", "shim", "pyref_capi.h")
DEFAULT_TABLE = os.path.join(ROOT, "gdbext", "pyref", "rules", "_capi_data.py")


def generate(data_dir, overrides_path):
    """(header text, table text, {name: Api}) from the inputs; raises GenError, OSError."""
    apis = load(data_dir, overrides_path)
    decide(apis)
    return header(apis), table(apis), apis


def write(path, text):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA,
                    help="directory with refcounts-3.11.dat and refcounts-main.dat "
                         "(default: %(default)s)")
    ap.add_argument("--overrides", default=DEFAULT_OVERRIDES)
    ap.add_argument("--header", default=DEFAULT_HEADER)
    ap.add_argument("--table", default=DEFAULT_TABLE)
    ap.add_argument("--list", action="store_true",
                    help="print each wrapped API and its recipe instead of writing files")
    opts = ap.parse_args(argv)
    try:
        hdr, tbl, apis = generate(opts.data, opts.overrides)
    except (GenError, OSError) as e:
        print("gen_capi: %s" % e, file=sys.stderr)
        return 1
    if opts.list:
        for name in sorted(apis):
            a = apis[name]
            if a.recipe:
                print("%-40s %-6s %-8s %s" % (name, a.recipe, guard(a) or "-", describe(a)))
        return 0
    write(opts.header, hdr)
    write(opts.table, tbl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
