"""The errors every layer of pyref shares, and the one contract of a memory reader.

A reader is a callable `read(addr, size) -> bytes-like` that returns all `size` bytes or
raises. What it raises for memory it cannot give is one of READ_ERRORS: ReadError (what
pyref's own readers raise: inferior/target.py's MemoryReadError subclasses it), or what a
plain reader raises (MemoryError from reader/corefile.py and tests' synthetic memory,
OSError, ValueError, RuntimeError, the base of gdb.error and gdb.MemoryError when a
caller passes Inferior.read_memory unwrapped). The gdb-free modules catch READ_ERRORS and
nothing wider; none of them imports gdb.
"""


class PyrefError(Exception):
    """A problem to tell the user in one line (no "pyref: " prefix: the command framework
    adds it)."""


class ReadError(PyrefError):
    """`size` bytes at `addr` are not readable (unmapped, or absent from the core)."""

    def __init__(self, addr, size):
        self.addr, self.size = addr, size
        super().__init__("cannot read %d bytes at 0x%x" % (size, addr))


READ_ERRORS = (ReadError, MemoryError, OSError, ValueError, RuntimeError)


class NoTargetError(PyrefError):
    def __init__(self):
        super().__init__("no process or core file")


class NoDebugInfoError(PyrefError):
    """The DWARF description of a CPython struct is not loaded."""


class RingError(PyrefError):
    """The bytes at an address are not a ring header this reader can use. The message is
    one line saying why."""
