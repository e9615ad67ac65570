"""`pyref watch`: log every change of an object's reference count and stop on a condition.
The watches themselves (gdb watchpoints, their stop() callback, the debug-register budget)
are inferior/watchpoints.py; this module parses, creates and lists them."""
import gdb

from pyref import commands
from pyref.commands import settings
from pyref.errors import PyrefError
from pyref.inferior import target, watchpoints

DEFAULT_STACK_DEPTH = 8   # Python frames logged per change with --python-stack


class WatchCommand(commands.Subcommand):
    name = "watch"
    summary = "Log every change of an object's reference count, and stop on a condition."
    rest_argument = "expr"
    details = """\
Sets a hardware watchpoint on the object's reference count (ob_refcnt; on 3.13t both
ob_ref_local and ob_ref_shared) and lets the program run. Each change prints one line:
before -> after, your C file:line and function that made it (the first frame outside
pyref's shim, CPython's headers and the interpreter, whatever the build inlined), what
wrote the count (Py_INCREF; for a change inside CPython, where: PyList_Append at
listobject.c:335), with a traced build the matching ring record, and the innermost Python
frame (`set pyref python-stack off` drops it; --python-stack shows the whole stack). Execution
goes on unless a condition holds. At count 0 the object is being deallocated; the watch
ends when its memory is next written (freed or reused) or the process exits.

  pyref watch list          the watches, their conditions and counts
  pyref watch delete [ID]   delete one watch (or all); `pyref watch -- list` watches a
                            variable named list

Under rr replay (or gdb's `record full`), reverse-continue stops at the previous change.
A core file cannot be watched. Each watch takes one of the 4 x86 debug registers (two on
3.13t); --software uses a software watchpoint instead, which is very slow. Immortal objects
are refused: their count never changes. Nothing is called in the inferior."""
    examples = ("pyref watch op", "pyref watch --until 0 item",
                "pyref watch --below 2 --python-stack self->cache", "pyref watch list",
                "pyref watch delete 1")

    def add_arguments(self, parser):
        parser.add_argument("--until", type=int, metavar="N",
                            help="stop when a change makes the count N")
        parser.add_argument("--below", type=int, metavar="N",
                            help="stop when a change makes the count less than N")
        parser.add_argument("--on-free", action="store_true",
                            help="stop when the count reaches 0 (the object is being "
                                 "deallocated)")
        parser.add_argument("--log", action="store_true",
                            help="one line per change (the default)")
        parser.add_argument("--summary", action="store_true",
                            help="also a summary (changes per site) when the watch stops "
                                 "or ends")
        parser.add_argument("--python-stack", action="store_true",
                            help="log the Python stack with each change")
        parser.add_argument("--depth", type=int, default=DEFAULT_STACK_DEPTH, metavar="N",
                            help="Python frames per change with --python-stack (default "
                                 "%d)" % DEFAULT_STACK_DEPTH)
        parser.add_argument("--software", action="store_true",
                            help="a software watchpoint (very slow), e.g. when the debug "
                                 "registers are used up")
        parser.add_argument("expr", metavar="EXPR",
                            help="a GDB expression for the object's address")

    def parse(self, arg):
        words = arg.split()
        if words and words[0] == "list":
            if len(words) > 1:
                raise PyrefError("pyref watch list takes no arguments")
            return ("list",)
        if words and words[0] == "delete":
            ids = []
            for w in words[1:]:
                try:
                    ids.append(int(w))
                except ValueError:
                    raise PyrefError("pyref watch delete wants watch numbers, not %r"
                                     % w) from None
            return ("delete", ids)
        return super().parse(arg)

    def run(self, args, from_tty):
        if isinstance(args, tuple):
            if args[0] == "list":
                self.write(watchpoints.list_text())
            else:
                self.write(watchpoints.delete(args[1]))
            return
        if args.until is not None and args.until < 0:
            raise PyrefError("--until wants a count of 0 or more")
        if args.below is not None and args.below < 1:
            raise PyrefError("--below wants a count of 1 or more")
        if args.depth <= 0:
            raise PyrefError("--depth wants a positive number")
        target.require_target()
        addr = target.eval_address(args.expr)
        w = watchpoints.create(addr, until=args.until, below=args.below,
                               on_free=args.on_free, software=args.software,
                               stack_depth=args.depth if args.python_stack else 0,
                               summary=args.summary, styler=settings.styler,
                               python_stack=settings.python_stack)
        kinds = ", ".join("%s %d on %s" % (
            "hardware watchpoint" if bp.type == gdb.BP_HARDWARE_WATCHPOINT else
            "software watchpoint", bp.number, what)
            for bp, (_, _, what) in zip(w.breakpoints, w.words))
        self.write("pyref watch %d: 0x%x (%s), count %d; %s; %s%s\n" % (
            w.id, addr, w.type_name, w.count, kinds, w.condition_text(),
            "; ring records shown" if w.rings else ""))
        if w.until is not None and w.until == w.count:
            self.write("pyref watch %d: the count is %d already: the watch stops the next "
                       "time a change makes it %d\n" % (w.id, w.count, w.until))


def register():
    commands.install(WatchCommand)
