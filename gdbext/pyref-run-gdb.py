# pyref-run's half inside GDB (bin/pyref-run starts `gdb -batch -nx -x pyref-gdb.py -x this`
# with PYREF_RUN_CONFIG naming a JSON file of what to do). Runs the program once, with its
# standard streams on the caller's (the shell redirections of `run`), stops it once it is
# done but before the interpreter tears its objects down (the first of the breakpoints
# below), runs `pyref leaks --json` there, lets the program finish, and writes what happened
# to the config's "result" file: the exit status, the leak report, or a crash's `pyref why`.
# Nothing here calls a function in the program.
import json
import os
import signal

import gdb
from pyref.commands.leaks import leak_text
from pyref.rules import suppress

# Where "the program is done": Py_FinalizeEx (Py_RunMain after `python -m ...` or a
# script, an embedding program's own call; 3.13+ also _Py_Finalize), Py_Exit (sys.exit
# from C) and _exit (os._exit, or exit() of an embedding program that never finalizes).
# The first one hit is the stop; the others are removed then.
STOPS = ("Py_FinalizeEx", "_Py_Finalize", "Py_Exit", "_exit")
CRASHES = ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT", "SIGSYS")


def _quiet(cmd):
    return gdb.execute(cmd, to_string=True)


def _stop_event(ev, seen):
    seen.append(ev)


def _convenience(name):
    v = gdb.convenience_variable(name)
    return None if v is None else int(v)


def main():
    with open(os.environ["PYREF_RUN_CONFIG"]) as f:
        cfg = json.load(f)
    result = {}
    try:
        drive(cfg, result)
    except Exception as e:        # pyref-run reports it, with gdb's log, in one message
        result["error"] = "%s: %s" % (type(e).__name__, e)
        result.setdefault("status", None)
    with open(cfg["result"], "w") as f:
        json.dump(result, f)


def drive(cfg, result):
    result.update({"status": None, "signal": None, "stop": None, "leaks": None,
                   "leaks_error": None, "crash": None, "crash_text": None, "executable": None})
    for c in ("set confirm off", "set breakpoint pending on", "set print thread-events off",
              "set print inferior-events off", "handle all nostop noprint pass",
              "handle %s stop print nopass" % " ".join(CRASHES)):
        _quiet(c)
    # The program's environment is the caller's: gdb adds LINES and COLUMNS, and its own
    # startup shell is /bin/sh (the redirections of `run` are POSIX sh).
    for name, value in cfg["environment"].items():
        _quiet("unset environment %s" % name if value is None
               else "set environment %s=%s" % (name, value))
    bps = []
    for fn in STOPS:
        bp = gdb.Breakpoint(fn, internal=True)
        bp.silent = True
        bps.append(bp)
    seen = []
    gdb.events.stop.connect(lambda ev: _stop_event(ev, seen))
    # starti: stopped at its first instruction, the program gets the caller's terminal
    command = "starti " + cfg["run_args"]
    while True:
        del seen[:]
        try:
            gdb.execute(command, to_string=True)
        except gdb.error as e:
            result["error"] = str(e)
            break
        if command.startswith("starti") and gdb.selected_inferior().pid:
            _give_terminal(cfg["stdin_fd"], gdb.selected_inferior().pid)
            command = "continue"
            continue
        command = "continue"
        if not gdb.selected_inferior().pid:               # exited
            result["status"] = _convenience("_exitcode")
            result["signal"] = _convenience("_exitsignal")
            break
        ev = seen[-1] if seen else None
        if isinstance(ev, gdb.SignalEvent):
            if ev.stop_signal in CRASHES:
                result["signal_name"] = ev.stop_signal
                result["executable"] = gdb.selected_inferior().progspace.filename
                result["crash_text"] = _run_pyref("pyref why")
                result["crash"] = _json_of(_run_pyref("pyref why --json"))
                _quiet("kill")
                break
            command = "signal %s" % ev.stop_signal   # e.g. SIGINT: the program's to handle
            continue
        if isinstance(ev, gdb.BreakpointEvent) and result["stop"] is None:
            result["stop"] = ev.breakpoints[0].location
            for bp in bps:
                bp.delete()
            text = _run_pyref("pyref leaks --json --top %d" % cfg.get("top", 1000))
            rep = _json_of(text)
            if rep is None:
                result["leaks_error"] = text.strip().splitlines()[-1] if text.strip() \
                    else "pyref leaks printed nothing"
            else:
                rules = suppress.load(cfg["suppress"]) if cfg["suppress"] else []
                rep = suppress.apply(rep, rules, cfg["min_refs"])
                rep["text"] = leak_text(rep)
            result["leaks"] = rep


def _give_terminal(fd, pid):
    """Makes the program's process group the foreground one of the caller's terminal, when
    its standard input is one: GDB, whose own input is not a terminal, started it in a
    process group of its own, which would be stopped (SIGTTIN) on reading the terminal, and
    would not get the terminal's Ctrl-C. pyref-run takes the terminal back at the end."""
    try:
        if not os.isatty(fd):
            return
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(fd, os.getpgid(pid))
        finally:
            signal.signal(signal.SIGTTOU, old)
    except OSError:
        pass        # not our terminal (another session's): the program reads it as it can


def _run_pyref(cmd):
    try:
        return gdb.execute(cmd, to_string=True)
    except gdb.error as e:        # pyref's one-line user error (no ring, ...)
        return "%s\n" % e


def _json_of(text):
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


main()
