"""The one line pyref says when it loads into an interactive GDB (gdbext/pyref-gdb.py): on
a terminal, once however often it is loaded; nothing under -batch, nor when GDB reads its
commands from a pipe. Real gdb on a real pseudo-terminal."""
import os
import pty
import select
import subprocess
import time

import pyreftest

import pyref


def on_terminal(argv, typed, timeout=60):
    """Everything GDB writes when run on a new pseudo-terminal, with the lines `typed`
    sent once it prompts (or at once under -batch, which never prompts)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    sent = False
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not sent and (b"(gdb) " in out or "-batch" in argv):
            os.write(master, "".join(line + "\n" for line in typed).encode())
            sent = True
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal closed: gdb exited
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout=30)
    os.close(master)
    return out.decode("utf-8", "replace")


def test_banner_once_on_a_terminal():
    out = on_terminal(["/usr/bin/gdb", "-nx", "-q", "-x", pyreftest.LOADER],
                      ["source " + pyreftest.LOADER, "echo @@loaded twice\\n", "quit"])
    assert pyref.BANNER == ('pyref %s: reference-count history of C extensions; "help '
                            'pyref" lists its commands' % pyref.__version__)
    assert out.count(pyref.BANNER) == 1, out
    assert out.index(pyref.BANNER) < out.index("@@loaded twice"), out


def test_no_banner_in_batch_or_from_a_pipe():
    batch = on_terminal(["/usr/bin/gdb", "-batch", "-nx", "-x", pyreftest.LOADER,
                         "-ex", "echo @@batch\\n"], [])
    assert "@@batch" in batch and "pyref" not in batch, batch
    piped = subprocess.run(["/usr/bin/gdb", "-nx", "-q", "-x", pyreftest.LOADER],
                           input="echo @@piped\\n\nquit\n", capture_output=True, text=True,
                           timeout=60)
    assert "@@piped" in piped.stdout and "pyref" not in piped.stdout + piped.stderr, piped
