"""`pyref show`: one object's type, reference count, state, size and short repr, read from
the target's memory with the interpreter's DWARF (inferior/objects.py, inferior/objrepr.py).
"""
import json

from pyref import commands
from pyref.errors import PyrefError
from pyref.inferior import objects, objrepr, target
from pyref.inferior.target import MemoryReadError


class Show(commands.Subcommand):
    name = "show"
    summary = "Show a Python object: type, reference count, state, size and a short repr."
    rest_argument = "expr"
    details = """\
STATE is "live", "freed" (filled with the debug allocator's 0xDD, reference count 0 or
negative, or a free pymalloc block) or "not an object" (NULL, misaligned, or its ob_type
is not a type), with the reason. The repr is bounded: at most 1024 characters, 10
elements per container, 6 levels; [...] marks a cycle or a deeper level.
Works on a live process and on a core file, with or without the pyref runtime: it needs
only the interpreter's debug info."""
    examples = ("pyref show op", "pyref show 0x7ffff7a1b2c0", "pyref show args->ob_item[0]")

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("expr", metavar="EXPR",
                            help="a GDB expression for the object's address: a PyObject * "
                                 "variable, an integer, $1, (PyObject *) $rdi")

    def run(self, args, from_tty):
        target.require_target()
        addr = target.eval_address(args.expr)
        try:
            info = objects.inspect(addr)
        except MemoryReadError:
            raise PyrefError("cannot read memory at 0x%x: no object there" % addr) from None
        if args.json:
            self.write(json.dumps(object_json(info), indent=1) + "\n")
        else:
            self.write(format_object(info))


def object_json(info):
    """The `pyref show --json` object for one ObjectInfo."""
    live = info.state == objects.LIVE
    return {"address": "0x%x" % info.addr,
            "type": info.type.name if info.type is not None else None,
            "type_address": "0x%x" % info.type_addr if info.type_addr else None,
            "refcount": str(info.refcount) if info.refcount is not None else None,
            "immortal": bool(info.refcount is not None and info.refcount.immortal),
            "state": info.state, "reason": info.reason or None,
            "size": info.size if live else None,
            "repr": objrepr.short_repr(info.addr, info=info) if live else None}


def format_object(info):
    """The text of `pyref show` for one ObjectInfo."""
    rows = [("address", "0x%x" % info.addr)]
    if info.refcount is not None:  # the header was read
        if info.type is not None:
            rows.append(("type", "%s (type object 0x%x)%s" % (
                info.type.name, info.type_addr,
                ", from the stale header" if info.stale else "")))
        else:
            rows.append(("type", "? (ob_type 0x%x)" % info.type_addr))
        rows.append(("refcount", str(info.refcount)))
    rows.append(("state", info.state + (": " + info.reason if info.reason else "")))
    if info.state == objects.LIVE:
        basic, item, n = info.size_parts
        rows.append(("size", "%d bytes" % info.size +
                     (" (%d + %d * %d)" % (basic, n, item) if item and n else "")))
        rows.append(("repr", objrepr.short_repr(info.addr, info=info)))
    return "".join("%-9s %s\n" % (label + ":", value) for label, value in rows)


def register():
    commands.install(Show)
