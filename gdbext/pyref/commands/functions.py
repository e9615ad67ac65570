"""pyref's convenience functions, for expressions, breakpoint conditions and scripts:

    $pyref_refcnt(OBJ)   the reference count, as Py_REFCNT() would read it (an integer)
    $pyref_type(OBJ)     the name of the object's type ("list"; a freed object's stale one)
    $pyref_state(OBJ)    "live", "freed", "not an object" or "unreadable"

OBJ is any expression for an object's address: a PyObject * (or any pointer), an integer,
or an object lvalue such as `*op` or `_Py_NoneStruct`. Each call reads the object once
through inferior/objects.py (DWARF layouts, no inferior calls), so they work on a live process
and a core alike:

    (gdb) break list_dealloc if $pyref_refcnt(op) < 0
    (gdb) print $_streq($pyref_state(item), "freed")

$pyref_state classifies any address and fails only without a target or debug info;
$pyref_refcnt and $pyref_type fail on an address that holds no object header. A failure is
one line (gdb.GdbError "pyref: $pyref_NAME: ..."), never a Python traceback.
"""
import gdb

from pyref.commands import one_line
from pyref.errors import PyrefError
from pyref.inferior import objects, target
from pyref.inferior.target import MemoryReadError

class _ObjectFunction(gdb.Function):
    """Base: one argument, an object's address; the one place where exceptions become
    one-line gdb.GdbErrors."""

    name = None  # without the "$"

    def __init__(self):
        super().__init__(self.name)

    def compute(self, addr):
        raise NotImplementedError

    def invoke(self, *args):
        prefix = "pyref: $%s" % self.name
        try:
            if len(args) != 1:
                raise PyrefError("takes one argument, an object's address (%d given)"
                                 % len(args))
            target.require_target()
            return self.compute(target.value_address(args[0]))
        except gdb.GdbError:
            raise
        except (PyrefError, gdb.error) as e:  # MemoryReadError, gdb.MemoryError included
            raise gdb.GdbError(one_line("%s: %s" % (prefix, e))) from None
        except Exception as e:
            raise gdb.GdbError(one_line("%s: internal error: %s: %s"
                                         % (prefix, type(e).__name__, e))) from None


def _inspect(addr):
    try:
        return objects.inspect(addr)
    except MemoryReadError:
        raise PyrefError("cannot read memory at 0x%x: no object there" % addr) from None


class RefCnt(_ObjectFunction):
    """$pyref_refcnt(OBJ): the object's reference count, as Py_REFCNT() would read it.
Usage: $pyref_refcnt(OBJ)
  OBJ  an expression for the object's address (PyObject *, integer, *op)
A freed object gives what its header holds (0 or negative after an over-release); an
immortal one (3.12+) what Py_REFCNT() gives (3.14+: the 32-bit ob_refcnt); on 3.13t
local + shared. An address that holds no object header (NULL, misaligned, unreadable) is
an error."""

    name = "pyref_refcnt"

    def compute(self, addr):
        info = _inspect(addr)
        if info.refcount is None or info.state == objects.NOT_OBJECT:
            raise PyrefError("0x%x is not an object: %s" % (addr, info.reason))
        if info.state == objects.FREED and "0xDD" in info.reason:
            # the word is the allocator's fill, not a count: a number would mislead
            raise PyrefError("0x%x is freed memory: %s" % (addr, info.reason))
        return int(info.refcount.total)


class TypeName(_ObjectFunction):
    """$pyref_type(OBJ): the name of the object's type, as a string ("list", "dict").
Usage: $pyref_type(OBJ)
  OBJ  an expression for the object's address (PyObject *, integer, *op)
A freed object whose header still names a valid type gives that (stale) type. An address
whose ob_type is not a type object is an error, with the reason."""

    name = "pyref_type"

    def compute(self, addr):
        info = _inspect(addr)
        if info.type is None:
            raise PyrefError("0x%x has no type: %s" % (addr, info.reason or info.state))
        return info.type.name


class State(_ObjectFunction):
    """$pyref_state(OBJ): "live", "freed", "not an object" or "unreadable".
Usage: $pyref_state(OBJ)
  OBJ  an expression for the address to classify (PyObject *, integer, *op)
The state `pyref show` reports, without its reason: "freed" is a header filled by the
debug allocator, a count of 0 or below, or a free pymalloc block. Compare it with
$_streq($pyref_state(op), "freed")."""

    name = "pyref_state"

    def compute(self, addr):
        try:
            return objects.inspect(addr).state
        except MemoryReadError:
            return "unreadable"


_functions = {}


def register():
    """Creates the functions (once: registering twice is harmless)."""
    for cls in (RefCnt, TypeName, State):
        if type(_functions.get(cls.name)) is not cls:
            _functions[cls.name] = cls()
