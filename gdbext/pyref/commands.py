"""pyref's GDB commands: the `pyref` prefix, the subcommand framework, and `pyref show`.

Adding a subcommand is one class in one module:

    # gdbext/pyref/ringcmd.py
    from pyref import commands, target

    class Ring(commands.Subcommand):
        name = "ring"                                # -> `pyref ring`
        summary = "Summarise the reference-count ring: threads, records, losses."
        details = "Reads the ring through the pyref_ring symbol or by scanning memory."
        examples = ("pyref ring", "pyref ring --threads")

        def add_arguments(self, parser):             # argparse: the parser is the help
            parser.add_argument("--threads", action="store_true", help="one line per thread")

        def run(self, args, from_tty):
            target.require_target()
            ...
            self.write("...\n")

and the module's name in SUBCOMMAND_MODULES of the loader (gdbext/pyref-gdb.py), which
imports each listed module that exists and then calls `register()`. Defining the class is
what registers it (Subcommand.__init_subclass__); `register()` instantiates each once.

The base class owns what every command must do alike:
- help in GDB's shape, built from the argparse parser: one summary line (what `help pyref`
  and `apropos` list), `Usage:`, the arguments, details, examples;
- parsing: arguments are split like GDB's own (gdb.string_to_argv); a command whose last
  argument is a GDB expression sets `rest_argument` and gets the rest of the line verbatim
  after any leading options (so `pyref show (PyObject *) $rdi` needs no quoting);
- `target.command_scope()` around `run` (no inferior calls, user settings restored);
- the single place where exceptions become messages: a PyrefError or gdb.error becomes a
  one-line gdb.GdbError "pyref: ...", anything unexpected "pyref: internal error: ...".
  Never a Python traceback (gdb prints "Python Exception" only for non-GdbError).

`set pyref ...` / `show pyref ...` parameters are later work: a gdb.Parameter named
"pyref NAME" needs the prefix commands that `parameter_prefixes()` creates.
"""
import argparse
import json
import sys
import textwrap
import traceback

import gdb

from pyref import objects, target
from pyref.target import MemoryReadError, PyrefError

DEBUG = False  # True: also print the traceback of an internal error (for pyref's developers)


# ---------------------------------------------------------------------------------------
# The `pyref` prefix command and registration
# ---------------------------------------------------------------------------------------
class Pyref(gdb.Command):
    """Find reference-count bugs in CPython C extensions.
Inspect Python objects and the reference-count history that pyref's Python.h shim
records, in a live process or a core file. Every pyref command only reads the target:
it never calls functions in it (may-call-functions is off while it runs).

Type "help pyref SUBCOMMAND" for a subcommand's usage."""

    def __init__(self):
        super().__init__("pyref", gdb.COMMAND_DATA, gdb.COMPLETE_COMMAND, True)


_subcommand_classes = {}   # name -> class, filled by defining a Subcommand subclass
_instances = {}            # "pyref" and subcommand names -> the registered gdb.Command


def register():
    """Creates the `pyref` prefix and one instance of every Subcommand class defined so
    far. Calling it again registers only what is new, so loading pyref twice is harmless."""
    target.connect_events()
    if "pyref" not in _instances:
        _instances["pyref"] = Pyref()
    for name, cls in _subcommand_classes.items():
        if type(_instances.get(name)) is not cls:  # new, or its module was reloaded
            _instances[name] = cls()


def registered():
    """{name: command instance} of the registered subcommands (for tests and help checks)."""
    return {n: c for n, c in _instances.items() if isinstance(c, Subcommand)}


class _SetPyref(gdb.Command):
    """Change pyref's settings."""

    def __init__(self):
        super().__init__("set pyref", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)

    def invoke(self, arg, from_tty):
        gdb.execute("help set pyref", from_tty)


class _ShowPyref(gdb.Command):
    """Show pyref's settings."""

    def __init__(self):
        super().__init__("show pyref", gdb.COMMAND_DATA, gdb.COMPLETE_NONE, True)

    def invoke(self, arg, from_tty):
        from pyref import settings
        gdb.write(settings.show_all())


def parameter_prefixes():
    """Creates the `set pyref` and `show pyref` prefix commands (once); call it before
    creating a gdb.Parameter named "pyref NAME"."""
    if "set pyref" not in _instances:
        _instances["set pyref"], _instances["show pyref"] = _SetPyref(), _ShowPyref()


# ---------------------------------------------------------------------------------------
# Subcommand base
# ---------------------------------------------------------------------------------------
class _HelpRequested(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports instead of exiting."""

    def error(self, message):  # already one clean line: no "pyref: " prefix added
        raise gdb.GdbError("%s: %s (see \"help %s\")" % (self.prog, message, self.prog))

    def exit(self, status=0, message=None):
        raise _HelpRequested()

    def print_help(self, file=None):
        raise _HelpRequested()


class Subcommand(gdb.Command):
    """Base of every `pyref NAME` command; see the module docstring."""

    name = None            # the word after `pyref`
    summary = ""           # one line: what `help pyref` and `apropos` show
    details = ""           # free text after the arguments
    examples = ()          # command lines, shown as "(gdb) ..."
    rest_argument = None   # set (to the positional's dest) when the last positional
                           # takes the rest of the line verbatim: a GDB expression
    command_class = gdb.COMMAND_DATA
    completer = gdb.COMPLETE_EXPRESSION

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:
            _subcommand_classes[cls.name] = cls

    def __init__(self):
        self.prog = "pyref " + self.name
        self.parser = _Parser(prog=self.prog, add_help=False, allow_abbrev=False)
        self.add_arguments(self.parser)
        type(self).__doc__ = self.help_text()  # gdb reads __doc__ at registration
        super().__init__(self.prog, self.command_class)  # complete() below decides

    # -- completion --------------------------------------------------------------------
    def complete(self, text, word):
        """gdb's completer: option names when the word being completed starts with '-' and
        options may still come; else the command's `completer` (an expression, nothing)."""
        words = text.split(" ")
        current = words[-1]
        if current.startswith("-") and self._options_may_follow(words[:-1]):
            cut = len(current) - len(word or "")
            return [o[cut:] for o in self.option_names() if o.startswith(current)]
        return self.completer

    def option_names(self):
        return sorted(o for a in self.parser._actions if a.help != argparse.SUPPRESS
                      for o in a.option_strings)

    def _options_may_follow(self, before):
        """Always for a plain argparse command; for a `rest_argument` command only while
        every word so far is an option or an option's value."""
        if self.rest_argument is None:
            return "--" not in before
        takes_value = {o: a.nargs != 0 for a in self.parser._actions for o in a.option_strings}
        expect_value = False
        for w in (w for w in before if w):
            if expect_value:
                expect_value = False
            elif w.startswith("-") and w != "--":
                expect_value = takes_value.get(w.split("=", 1)[0], False) and "=" not in w
            else:
                return False
        return True

    # -- to override -------------------------------------------------------------------
    def add_arguments(self, parser):
        """Add the command's arguments to `parser` (an argparse.ArgumentParser)."""

    def run(self, args, from_tty):
        """Do the work. Raise PyrefError (or a subclass) for anything the user should read;
        write output with self.write()."""
        raise NotImplementedError

    # -- services ----------------------------------------------------------------------
    @staticmethod
    def write(text):
        gdb.write(text)

    def help_text(self):
        usage = self.parser.format_usage().strip()
        usage = usage[len("usage:"):].strip() if usage.lower().startswith("usage:") else usage
        lines = [self.summary, "Usage: " + " ".join(usage.split())]
        rows = []
        for action in self.parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            if action.option_strings:
                label = ", ".join(action.option_strings)
                if action.nargs != 0:
                    label += " " + (action.metavar or action.dest.upper())
            else:
                label = action.metavar or action.dest.upper()
            rows.append((label, action.help or ""))
        if rows:
            width = max(len(label) for label, _ in rows)
            lines.append("")
            for label, text in rows:
                wrapped = textwrap.wrap(text, 88 - width - 4) or [""]
                lines.append("  %-*s  %s" % (width, label, wrapped[0]))
                lines += ["  %-*s  %s" % (width, "", more) for more in wrapped[1:]]
        if self.details:
            lines += ["", self.details.strip()]
        if self.examples:
            lines += ["", "Examples:"] + ["  (gdb) " + e for e in self.examples]
        return "\n".join(lines)

    def parse(self, arg):
        """argparse Namespace from the command line `arg`; None when help was shown."""
        try:
            if self.rest_argument is None:
                argv = gdb.string_to_argv(arg)
                if "-h" in argv or "--help" in argv:
                    raise _HelpRequested()
                return self.parser.parse_args(argv)
            options, rest = self._split_options(arg)
            return self.parser.parse_args(options + (["--", rest] if rest else []))
        except _HelpRequested:
            self.write(self.help_text() + "\n")
            return None

    def _split_options(self, arg):
        """Leading option words of `arg` (with their values) and the verbatim rest. An
        expression may start with '-' followed by a digit or '(' (`-1`, `-(x)`); `--` ends
        the options explicitly."""
        takes_value = {o: a.nargs != 0 for a in self.parser._actions for o in a.option_strings}
        options = []
        rest = arg.strip()
        while rest.startswith("-") and len(rest) > 1 and (rest[1].isalpha() or rest[1] == "-"):
            word, _, tail = rest.partition(" ")
            if word == "--":
                rest = tail.strip()
                break
            if word in ("-h", "--help"):
                raise _HelpRequested()
            options.append(word)
            rest = tail.strip()
            if takes_value.get(word.split("=", 1)[0]) and "=" not in word:
                value, _, tail = rest.partition(" ")
                options.append(value)
                rest = tail.strip()
        return options, rest

    # -- gdb entry point: the one place where exceptions become messages ---------------
    def invoke(self, arg, from_tty):
        try:
            with target.command_scope():
                args = self.parse(arg)
                if args is not None:
                    self.run(args, from_tty)
        except gdb.GdbError:
            raise
        except PyrefError as e:
            raise gdb.GdbError(_one_line("pyref: %s" % e)) from None
        except KeyboardInterrupt:
            raise gdb.GdbError("pyref: interrupted") from None
        except gdb.error as e:  # gdb.MemoryError included
            raise gdb.GdbError(_one_line("pyref: %s" % e)) from None
        except Exception as e:
            if DEBUG:
                gdb.write("".join(traceback.format_exception(*sys.exc_info())))
            raise gdb.GdbError(_one_line("pyref: internal error: %s: %s"
                                         % (type(e).__name__, e))) from None


def _one_line(text):
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------
# pyref show
# ---------------------------------------------------------------------------------------
class Show(Subcommand):
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
            "repr": objects.short_repr(info.addr, info=info) if live else None}


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
        rows.append(("repr", objects.short_repr(info.addr, info=info)))
    return "".join("%-9s %s\n" % (label + ":", value) for label, value in rows)
