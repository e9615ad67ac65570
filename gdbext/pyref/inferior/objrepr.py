"""A short, bounded repr of an object in the target, in Python's syntax: at most MAX_REPR
characters, MAX_ITEMS elements per container, MAX_DEPTH levels, cycles marked as Python
marks them ([...]). Elements that are freed or not objects appear as <freed 0x...> /
<not an object 0x...>; nothing here raises for bad memory. Values are read through
inferior/objects.py.
"""
import struct

from pyref.errors import NoDebugInfoError
from pyref.inferior import layout, target
from pyref.inferior.layout import need
from pyref.inferior.objects import (FREED, LIVE, MAX_DEPTH, MAX_ITEMS, MAX_NAME, MAX_REPR,
                                    dict_items, long_digits, set_items, inspect, int_value,
                                    module_name, str_value, type_info)
from pyref.inferior.target import MemoryReadError


class _Full(Exception):
    pass


class _Out:
    """Collects repr text and stops the walk (raising _Full) past `limit` characters."""

    def __init__(self, limit):
        self.parts, self.n, self.limit = [], 0, limit

    def write(self, s):
        self.parts.append(s)
        self.n += len(s)
        if self.n > self.limit:
            raise _Full()

    def text(self):
        s = "".join(self.parts)
        return s if len(s) <= self.limit else s[:self.limit - 3] + "..."


def short_repr(addr, max_len=MAX_REPR, max_items=MAX_ITEMS, max_depth=MAX_DEPTH, info=None):
    """A repr of the object at `addr` in Python's syntax, bounded: at most `max_len`
    characters, `max_items` per container, `max_depth` levels, cycles as [...]. Elements
    that are freed or not objects appear as <freed 0x...> / <not an object 0x...>."""
    out = _Out(max_len)
    try:
        _Repr(max_items, max_depth).write(addr, out, 0, set(), info)
    except _Full:
        pass
    return out.text()


class _Repr:
    def __init__(self, max_items, max_depth):
        self.max_items, self.max_depth = max_items, max_depth

    def write(self, addr, out, depth, active, info=None):
        try:
            if info is None:
                info = inspect(addr)
        except MemoryReadError:
            out.write("<unreadable 0x%x>" % addr)
            return
        if info.state == FREED:
            out.write("<freed 0x%x>" % addr)
            return
        if info.state != LIVE:
            out.write("<not an object 0x%x>" % addr)
            return
        method = getattr(self, "_" + info.kind, self._object)
        try:
            method(info, out, depth, active)
        except (MemoryReadError, NoDebugInfoError) as e:
            out.write("<%s object at 0x%x: %s>" % (info.type.name, addr, e))

    # -- containers --------------------------------------------------------------------
    def _items(self, info, out, depth, active, opening, closing, items, total, write_item):
        if info.addr in active or depth >= self.max_depth:
            out.write(opening + "..." + closing)
            return
        active.add(info.addr)
        try:
            out.write(opening)
            shown = 0
            for item in items:
                if shown == self.max_items:
                    break
                if shown:
                    out.write(", ")
                write_item(item, out, depth + 1, active)
                shown += 1
            if total > shown:
                out.write(", ..." if shown else "...")
            out.write(closing)
        finally:
            active.discard(info.addr)

    def _tuple(self, info, out, depth, active):
        n = info.body.i64(layout.layouts().ob_size)
        at = info.addr + need("PyTupleObject").offset("ob_item")
        ptrs = target.read_ptrs(at, max(0, min(n, self.max_items)))
        closing = ",)" if n == 1 else ")"
        self._items(info, out, depth, active, "(", closing, ptrs, n, self.write)

    def _list(self, info, out, depth, active):
        n = info.body.i64(layout.layouts().ob_size)
        at = info.body.u64(need("PyListObject").offset("ob_item"))
        ptrs = target.read_ptrs(at, max(0, min(n, self.max_items))) if at else ()
        self._items(info, out, depth, active, "[", "]", ptrs, n, self.write)

    def _dict(self, info, out, depth, active):
        used = info.body.i64(need("PyDictObject").offset("ma_used"))

        def pair(kv, out, depth, active):
            self.write(kv[0], out, depth, active)
            out.write(": ")
            self.write(kv[1], out, depth, active)

        self._items(info, out, depth, active, "{", "}", dict_items(info), used, pair)

    def _set(self, info, out, depth, active, opening="{", closing="}"):
        used = info.body.i64(need("PySetObject").offset("used"))
        if used == 0:
            out.write("set()" if opening == "{" else "frozenset()")
            return
        self._items(info, out, depth, active, opening, closing, set_items(info), used,
                    self.write)

    def _frozenset(self, info, out, depth, active):
        self._set(info, out, depth, active, "frozenset({", "})")

    # -- scalars -----------------------------------------------------------------------
    def _none(self, info, out, depth, active):
        out.write("None")

    def _true(self, info, out, depth, active):
        out.write("True")

    def _false(self, info, out, depth, active):
        out.write("False")

    def _int(self, info, out, depth, active):
        value = int_value(info)
        if info.type.name == "bool" and value in (0, 1):
            out.write("True" if value else "False")
        elif value is None:
            _, ndigits, _, dsize = long_digits(info)
            out.write("<int of %d %d-bit digits>" % (ndigits, 30 if dsize == 4 else 15))
        else:
            out.write(str(value))

    def _float(self, info, out, depth, active):
        off = need("PyFloatObject").offset("ob_fval")
        out.write(repr(struct.unpack("<d", target.read(info.addr + off, 8))[0]))

    def _str(self, info, out, depth, active):
        budget = max(16, out.limit - out.n)
        text, length = str_value(info.addr, budget)
        if length < 0:
            out.write(text)
        else:
            out.write(repr(text) + ("..." if length > len(text) else ""))

    def _bytes(self, info, out, depth, active):
        n = info.body.i64(layout.layouts().ob_size)
        shown = max(0, min(n, max(16, out.limit - out.n)))
        off = need("PyBytesObject").offset("ob_sval")
        out.write(repr(target.read(info.addr + off, shown)) + ("..." if n > shown else ""))

    # -- named things ------------------------------------------------------------------
    def _type(self, info, out, depth, active):
        out.write("<class '%s'>" % type_info(info.addr).name)

    def _module(self, info, out, depth, active):
        name = module_name(info)
        out.write("<module '%s'>" % name if name is not None
                  else "<module at 0x%x>" % info.addr)

    def _function(self, info, out, depth, active):
        f = need("PyFunctionObject")
        name = None
        for member in ("func_qualname", "func_name"):
            if member in f:
                ptr = info.body.u64(f.offset(member))
                obj = inspect(ptr) if ptr else None
                if obj is not None and obj.state == LIVE and obj.kind == "str":
                    name = str_value(ptr, MAX_NAME)[0]
                    break
        out.write("<function %s at 0x%x>" % (name or "?", info.addr))

    def _object(self, info, out, depth, active):
        out.write("<%s object at 0x%x>" % (info.type.name, info.addr))
