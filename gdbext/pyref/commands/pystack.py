"""`pyref pystack`: the Python stack of a thread, read from memory (inferior/pythreads.py),
printed as py-bt prints it."""
import json

import gdb

from pyref import commands
from pyref.commands import settings
from pyref.errors import PyrefError
from pyref.inferior import target
from pyref.inferior.pythreads import DEFAULT_LIMIT, frame_text, plain, read_stack, thread_state


def stack_text(stack, thread, st=plain):
    out = ["Python stack of thread %d (LWP %d), thread state %s, most recent call first:"
           % (thread.num, thread.ptid[1], st("0x%x" % stack.tstate, "address"))]
    if not stack.frames:
        out.append("  (no Python frames)")
    out += ["  " + frame_text(fr, st) for fr in stack.frames]
    if stack.truncated:
        out.append("  ... (more frames: raise --limit)")
    if stack.problem:
        out.append("  (%s)" % stack.problem)
    return "\n".join(out) + "\n"


def stack_dict(stack, thread):
    return {"thread": thread.num, "lwp": thread.ptid[1], "tstate": "0x%x" % stack.tstate,
            "frames": [{"file": fr.file, "line": fr.line, "function": fr.func}
                       for fr in stack.frames],
            "skipped": stack.skipped, "truncated": stack.truncated, "problem": stack.problem}


class PyStack(commands.Subcommand):
    name = "pystack"
    summary = "Show the Python stack of the selected thread, read from memory (no calls)."
    details = """\
One line per Python frame, most recent call first, as py-bt prints them but with the
qualified function name (co_qualname, 3.11+). The frames are read from the thread's
PyThreadState in memory (3.10: the PyFrameObject chain; 3.11+: the _PyInterpreterFrame
chain), so this works on a core file, on a thread that does not hold the GIL, and without
libpython.py. Shim and incomplete frames are skipped as CPython's own walkers skip them.
Needs the interpreter's debug info (for the struct layouts)."""
    examples = ("pyref pystack", "pyref pystack -n 5", "pyref pystack --all",
                "pyref pystack --json")

    def add_arguments(self, parser):
        parser.add_argument("-n", "--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                            help="show at most N frames per thread (default %d)"
                                 % DEFAULT_LIMIT)
        parser.add_argument("--all", action="store_true",
                            help="every thread that has a Python thread state")
        parser.add_argument("--json", action="store_true",
                            help='print one JSON object: {"threads": [{"thread", "lwp", '
                                 '"tstate", "frames": [{"file", "line", "function"}], '
                                 '...}]}')

    def run(self, args, from_tty):
        if args.limit <= 0:
            raise PyrefError("--limit wants a positive number")
        target.require_target()
        if args.all:
            threads = [t for t in sorted(gdb.selected_inferior().threads(),
                                         key=lambda t: t.num) if thread_state(t) is not None]
        else:
            threads = [gdb.selected_thread()]
        stacks = [(read_stack(t, args.limit), t) for t in threads]
        if args.json:
            self.write(json.dumps({"threads": [stack_dict(s, t) for s, t in stacks]},
                                  indent=1) + "\n")
            return
        if not stacks:
            self.write("no thread has a Python thread state\n")
            return
        st = settings.styler()
        self.write("\n".join(stack_text(s, t, st) for s, t in stacks))


def register():
    commands.install(PyStack)
