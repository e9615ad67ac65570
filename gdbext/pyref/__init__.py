"""pyref's reader side: decodes the reference-count rings that the pyref runtime records in a
traced CPython extension (format: docs/ring-format.md), from a live process under GDB, a
core dump, or a raw memory image. `decode` and `corefile` import neither gdb nor anything
outside the standard library, so they also run standalone."""

__version__ = "0.1.0"  # = pyref_version in c_helpers/ring.c (tests/test_layout.py checks)
