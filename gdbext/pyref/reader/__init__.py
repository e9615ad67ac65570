"""Bytes in, facts out: the ring format and its decoder, call sites, ELF core dumps, the
pointer scan and allocator blocks, Python frames and line tables. Every function that
touches a target takes a `read(addr, size)` callable (pyref/errors.py states its
contract); nothing here imports gdb (tests/unit/test_layers.py checks)."""
