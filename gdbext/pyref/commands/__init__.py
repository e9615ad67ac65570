"""pyref's GDB commands: the `pyref` prefix, the subcommand framework, and registration.
One module per command (commands/show.py, ring.py, history.py, why.py, explain.py,
pystack.py, watch.py, owners.py, leaks.py), plus `set/show pyref` (settings.py) and the
`$pyref_*` functions (functions.py). Each parses, calls the core (inferior/, rules/) and
formats: nothing here reads the target itself.

Adding a subcommand is one class in one module, and that module's register():

    # gdbext/pyref/commands/ring.py
    from pyref import commands
    from pyref.inferior import rings

    class Ring(commands.Subcommand):
        name = "ring"                                # -> `pyref ring`
        summary = "Summarise the reference-count ring: threads, records, losses."
        details = "Reads the ring through the pyref_ring symbol or by scanning memory."
        examples = ("pyref ring", "pyref ring --threads")

        def add_arguments(self, parser):             # argparse: the parser is the help
            parser.add_argument("--threads", action="store_true", help="one line per thread")

        def run(self, args, from_tty):
            ringset = rings.ring_set()
            ...
            self.write("...\n")

    def register():
        commands.install(Ring)

and the module in COMMAND_MODULES of gdbext/pyref/__init__.py, whose register() (what the
loader gdbext/pyref-gdb.py calls) calls every module's register(). Importing a module
registers nothing; registering twice is harmless (install() creates each command once).

The base class owns what every command must do alike:
- help in GDB's shape, built from the argparse parser: one summary line (what `help pyref`
  and `apropos` list), `Usage:`, the arguments, details, examples;
- parsing: arguments are split like GDB's own (gdb.string_to_argv); a command whose last
  argument is a GDB expression sets `rest_argument` and gets the rest of the line verbatim
  between its options, which may come before or after it (so `pyref show (PyObject *)
  $rdi` needs no quoting, and `pyref watch obj --log` works);
- `target.command_scope()` around `run` (no inferior calls, user settings restored);
- output: what `write()` writes has its control characters escaped (reader/text.py: a
  crafted core's strings cannot drive the terminal); integer options are bounded; on a
  truncated core a command whose answer does not carry the ring's caveats itself
  (`reports_caveats`) says the core is truncated, and so does its error;
- the single place where exceptions become messages: a PyrefError or gdb.error becomes a
  one-line gdb.GdbError "pyref: ...", anything unexpected "pyref: internal error: ...".
  Never a Python traceback (gdb prints "Python Exception" only for non-GdbError).
"""
import argparse
import re
import sys
import textwrap
import traceback

import gdb

from pyref.errors import PyrefError
from pyref.inferior import target
from pyref.reader.text import escape

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


_instances = {}            # "pyref" and subcommand names -> the registered gdb.Command


def register():
    """Creates the `pyref` prefix command (once)."""
    if "pyref" not in _instances:
        _instances["pyref"] = Pyref()


def install(*classes):
    """Registers one instance of each Subcommand class (after the `pyref` prefix): a class
    already registered is skipped, so registering twice is harmless; a class whose module
    was reloaded replaces the old one."""
    register()
    for cls in classes:
        if type(_instances.get(cls.name)) is not cls:
            _instances[cls.name] = cls()


def registered():
    """{name: command instance} of the registered subcommands (for tests and help checks)."""
    return {n: c for n, c in _instances.items() if isinstance(c, Subcommand)}


# ---------------------------------------------------------------------------------------
# Subcommand base
# ---------------------------------------------------------------------------------------
class _HelpRequested(Exception):
    pass


_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1


def _int64(text):
    """argparse's type for every integer option: what the target and Python's own bounds
    (islice, ranges) accept, so no number reaches a command that would make it fail."""
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None
    if not _INT_MIN <= v <= _INT_MAX:
        raise argparse.ArgumentTypeError("%s is out of range (at most 2^63-1)" % text)
    return v


class _Parser(argparse.ArgumentParser):
    """argparse that reports instead of exiting; integer options are bounded (_int64)."""

    def add_argument(self, *args, **kwargs):
        if kwargs.get("type") is int:
            kwargs["type"] = _int64
        return super().add_argument(*args, **kwargs)

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
        takes_value = self._takes_value()
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
        gdb.write(escape(text))

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
            if self.rest_argument is not None and len(rows) > 1:
                lines.append("Options may also follow %s." % self.rest_argument.upper())
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
        """Option words of `arg` (with their values) and the verbatim expression. Options
        come before the expression, or after it (`pyref watch obj --log`: the trailing
        words that are all this command's options). An expression may start with '-'
        followed by a digit or '(' (`-1`, `-(x)`); `--` ends the options explicitly, and
        then nothing after the expression is taken for an option."""
        takes_value = self._takes_value()
        options = []
        rest = arg.strip()
        explicit_end = False
        while rest.startswith("-") and len(rest) > 1 and (rest[1].isalpha() or rest[1] == "-"):
            word, _, tail = rest.partition(" ")
            if word == "--":
                rest = tail.strip()
                explicit_end = True
                break
            if word in ("-h", "--help"):
                raise _HelpRequested()
            options.append(word)
            rest = tail.strip()
            if takes_value.get(word.split("=", 1)[0]) and "=" not in word:
                value, _, tail = rest.partition(" ")
                options.append(value)
                rest = tail.strip()
        if explicit_end:
            return options, rest
        rest, trailing = self._trailing_options(rest, takes_value)
        unknown = re.search(r"(?:^|\s)(--[A-Za-z][\w-]*)", rest)
        if unknown:
            raise gdb.GdbError("%s: unknown option %s (options go before or after %s; see "
                               "\"help %s\")" % (self.prog, unknown.group(1),
                                                 self.rest_argument.upper(), self.prog))
        return options + trailing, rest

    def _takes_value(self):
        """{option string: True when it takes a value} of this command's options."""
        return {o: a.nargs != 0 for a in self.parser._actions for o in a.option_strings}

    @staticmethod
    def _trailing_options(rest, takes_value):
        """(expression, option words): the longest run of words at the end of `rest` that
        are all options of the command, each with its value, cut off the expression
        (whose text is kept verbatim)."""
        spans = [(m.start(), m.group()) for m in re.finditer(r"\S+", rest)]
        for i, (start, word) in enumerate(spans):
            if i == 0 or word.split("=", 1)[0] not in takes_value:
                continue
            words, taken, ok = [w for _, w in spans[i:]], [], True
            k = 0
            while k < len(words):
                w = words[k]
                name = w.split("=", 1)[0]
                if name not in takes_value or name in ("-h", "--help"):
                    ok = False
                    break
                taken.append(w)
                k += 1
                if takes_value[name] and "=" not in w:
                    if k == len(words):
                        ok = False
                        break
                    taken.append(words[k])
                    k += 1
            if ok:
                return rest[:start].rstrip(), taken
        return rest, []

    # -- gdb entry point: the one place where exceptions become messages ---------------
    def invoke(self, arg, from_tty):
        args = None
        try:
            with target.command_scope():
                args = self.parse(arg)
                if args is not None:
                    self.run(args, from_tty)
                    self._truncation_caveat(args, None)
        except gdb.GdbError:
            raise
        except PyrefError as e:
            raise gdb.GdbError(one_line(self._truncation_caveat(args, "pyref: %s" % e)))\
                from None
        except KeyboardInterrupt:
            raise gdb.GdbError("pyref: interrupted") from None
        except gdb.error as e:  # gdb.MemoryError included
            raise gdb.GdbError(one_line(self._truncation_caveat(args, "pyref: %s" % e)))\
                from None
        except Exception as e:
            if DEBUG:
                gdb.write("".join(traceback.format_exception(*sys.exc_info())))
            raise gdb.GdbError(one_line("pyref: internal error: %s: %s"
                                         % (type(e).__name__, e))) from None


    # Commands whose answers carry the ring's caveats themselves (reader/evidence.py);
    # every other command gets the one caveat of a truncated core from invoke().
    reports_caveats = False

    def _truncation_caveat(self, args, error):
        """A truncated core is called truncated by every command: `error` (a message)
        gets the reason appended and is returned; after a successful run the caveat is
        written (to stderr after --json, so the JSON stays one object)."""
        if self.reports_caveats and error is None:
            return None
        try:
            trunc = target.core_truncation()
        except (gdb.error, PyrefError):
            trunc = None
        if not trunc:
            return error
        if error is not None:
            return "%s (%s)" % (error, trunc)
        if getattr(args, "json", False):
            gdb.write("pyref: caveat: %s\n" % trunc, gdb.STDERR)
        else:
            self.write("caveat: %s\n" % trunc)
        return None


def one_line(text):
    """`text` on one line, its control characters escaped: what a gdb.GdbError says."""
    return escape(" ".join(str(text).split()))
