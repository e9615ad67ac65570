"""`pyref owners`: every word of the process's memory that holds an object's address, what
each is, and the account of the object's references. The search is inferior/memsearch.py,
the report and its text, JSON and Graphviz forms rules/ownergraph.py."""
import os
import shutil
import subprocess

from pyref import commands
from pyref.errors import PyrefError
from pyref.inferior import memsearch, target
from pyref.rules import ownergraph
from pyref.rules.ownergraph import MAX_DEPTH


def open_dot(path):
    """Opens --dot's FILE for writing before the search runs, so a path that cannot be
    written (a missing folder, a directory, /dev/full) is one line, not a lost report."""
    if os.path.isdir(path):
        raise PyrefError("--dot %s is a directory: give a file name" % path)
    try:
        return open(path, "w")
    except OSError as e:
        raise PyrefError("cannot write --dot %s: %s" % (path, e.strerror or e)) from None


def write_dot(rep, path, f=None):
    """Writes the owner graph as Graphviz to `path` (to the open file `f` when given);
    returns the PNG's path when `dot` made one, else None."""
    try:
        with f if f is not None else open(path, "w") as out:
            out.write(ownergraph.dot_text(rep))
    except OSError as e:
        raise PyrefError("cannot write --dot %s: %s" % (path, e.strerror or e)) from None
    dot = shutil.which("dot")
    if dot is None:
        return None
    png = os.path.splitext(path)[0] + ".png"
    try:
        subprocess.run([dot, "-Tpng", path, "-o", png], check=True, capture_output=True,
                       timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return png


class Owners(commands.Subcommand):
    name = "owners"
    summary = "Find every place in memory that holds a pointer to an object, and account " \
              "for its references."
    rest_argument = "expr"
    details = """\
Scans the process's writable memory (heap, anonymous mappings, libraries' data and bss,
thread stacks; live or from a core) for the object's address and says what each word is:
a list item, a dict value and its key, an instance attribute, a tuple item, a cell, an
interpreter frame's local, a module global, a type attribute; a C global or static (symbol
and library); a C frame's variable (thread, frame, variable); or heap of unknown owner.
Then the account: refcount N, K owners found, N - K unexplained, and the C sites that,
according to the pyref ring, acquired references and never released them.
Stale words (dead stack, free blocks, freed objects, past-the-end slots) are hidden
unless --all; the pyref ring itself is not searched. --depth N follows owners of owners
up to modules, C globals and stacks; --dot FILE draws that graph."""
    examples = ("pyref owners op", "pyref owners --depth 3 --dot /tmp/owners.dot obj",
                "pyref owners --all --json 0x7ffff7a1b2c0")

    def add_arguments(self, parser):
        parser.add_argument("--depth", type=int, default=1, metavar="N",
                            help="levels of owners to follow (default 1, at most %d)" %
                            MAX_DEPTH)
        parser.add_argument("--all", action="store_true", dest="show_all",
                            help="also show stale words (dead stack, freed blocks...)")
        parser.add_argument("--dot", metavar="FILE", default=None,
                            help="write the owner graph as Graphviz (and FILE.png when "
                                 "`dot` is installed)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("expr", metavar="EXPR",
                            help="a GDB expression for the object's address")

    def run(self, args, from_tty):
        if not 1 <= args.depth <= MAX_DEPTH:
            raise PyrefError("--depth wants 1..%d" % MAX_DEPTH)
        target.require_target()
        addr = target.eval_address(args.expr)
        if addr == 0 or addr & 7:
            raise PyrefError("0x%x is not an object address (NULL or misaligned)" % addr)
        dot = open_dot(args.dot) if args.dot else None
        try:
            rep = memsearch.build_report(addr, args.depth)
        except BaseException:
            if dot is not None:
                dot.close()
            raise
        if args.json:
            self.write(ownergraph.report_json(rep, args.show_all) + "\n")
        else:
            self.write(ownergraph.report_text(rep, args.show_all))
        if args.dot:
            png = write_dot(rep, args.dot, dot)
            if not args.json:
                self.write("graph written to %s%s\n" % (
                    args.dot, " and %s" % png if png else " (no `dot` here: no PNG)"))


def register():
    commands.install(Owners)
