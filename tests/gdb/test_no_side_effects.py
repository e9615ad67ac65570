"""No side effects: pyref's read-only commands never write to the
inferior and never leave `may-call-functions` changed.

The bad-input target (tests/gdb_targets/bad_input_target.py, python3.11d with the traced
seedext) is stopped live under gdb at its SIGABRT. A gdb Python snippet hashes every
writable mapping of the process (from /proc/PID/maps, read through
`Inferior.read_memory`), then every read-only command runs on several objects (good ones
and bad ones, errors included), then the mappings are hashed again and must be identical.

Skipped mappings: [vvar] and [vsyscall] (kernel pages, not readable through ptrace as
ordinary memory and not the process's own data). Everything else with a `w` permission is
compared, including the thread stacks, the ring and the heaps. While the process is stopped
nothing in it runs, so any difference can only come from gdb or pyref; gdb's software
breakpoints live in .text (not writable) and none are inserted here anyway.

`set may-call-functions on` is set first: pyref switches it off for the duration of each
command, and must restore it even when the command fails.
"""
import os
import re
import subprocess

import pytest

import pyreftest

PYTHON = "/usr/bin/python3.11d"
TARGET = os.path.join(pyreftest.ROOT, "tests", "gdb_targets", "bad_input_target.py")
SEED_SRC = os.path.join(pyreftest.ROOT, "tests", "ext", "seedext.c")

SNAPSHOT = r'''
import hashlib
def _pyref_snapshot():
    inf = gdb.selected_inferior()
    out = {}
    with open("/proc/%d/maps" % inf.pid) as f:
        for line in f:
            parts = line.split()
            if "w" not in parts[1]:
                continue
            name = parts[5] if len(parts) > 5 else ""
            if name in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            h = hashlib.sha1()
            a = start
            while a < end:
                n = min(end - a, 1 << 20)
                try:
                    h.update(inf.read_memory(a, n).tobytes())
                except gdb.MemoryError:
                    h.update(b"unreadable %d %d" % (a, n))
                a += n
            out[(start, end, name)] = (h.hexdigest(), end - start)
    return out
'''

OBJECTS = ["$b_huge", "$b_self_list", "$b_self_dict", "$b_arg", "$b_str", "$b_none",
           "$b_freed", "$b_nonobj", "$b_bytes_data", "0", "0xdeadbeef"]


def read_only_commands():
    cmds = ["pyref ring", "pyref ring --json", "pyref why", "pyref why --json",
            "pyref leaks", "pyref leaks --json", "pyref pystack", "pyref pystack --all",
            "pyref pystack --json", "pyref explain Py_INCREF", "pyref explain PyList_SetItem",
            "pyref explain NoSuch", "pyref explain", "pyref watch list"]
    tail = ["pyref show 0xdeadbeef"]  # the last command fails: the setting is still restored
    for o in OBJECTS:
        cmds += ["pyref show %s" % o, "pyref show --json %s" % o,
                 "pyref history %s" % o, "pyref history --json %s" % o,
                 "pyref why %s" % o, "pyref owners %s" % o, "pyref owners --depth 3 %s" % o,
                 "print $pyref_refcnt(%s)" % o, "print $pyref_type(%s)" % o,
                 "print $pyref_state(%s)" % o]
    return cmds + tail


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("nosideeffects"))
    pyreftest.build_ext(SEED_SRC, PYTHON, d)
    cmds = ["set may-call-functions on", "run", "source " + os.path.join(d, "ids.gdb"),
            "python\n" + SNAPSHOT + "\n_pyref_before = _pyref_snapshot()\n"]
    n = 0
    for c in read_only_commands():
        cmds += ["echo \\n@@CMD %d\\n" % n, c]
        n += 1
    cmds += ["echo \\n@@END\\n", "show may-call-functions",
             "python\n"
             "_pyref_after = _pyref_snapshot()\n"
             "print('@@ mappings %d bytes %d' % (len(_pyref_before), "
             "sum(v[1] for v in _pyref_before.values())))\n"
             "for k in sorted(set(_pyref_before) | set(_pyref_after)):\n"
             "    if _pyref_before.get(k) != _pyref_after.get(k):\n"
             "        print('@@ CHANGED %#x-%#x %s' % k)\n"
             "print('@@ compared')\n",
             # control: the check does see a one-byte write into a writable mapping
             "set var *(char *) $b_nonobj = 66",
             "python\n"
             "_pyref_ctl = _pyref_snapshot()\n"
             "print('@@ control changed %d' % sum(1 for k in _pyref_ctl "
             "if _pyref_ctl[k] != _pyref_after.get(k)))\n"]
    cmds = pyreftest.gdb_command(cmds, ["--args", PYTHON, TARGET, d, d])
    p = subprocess.run(cmds, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       errors="replace", timeout=180, cwd=d)
    return p.stdout, n


def test_memory_unchanged_by_read_only_commands(session):
    out, n = session
    assert "@@ compared" in out, out[-3000:]
    m = re.search(r"@@ mappings (\d+) bytes (\d+)", out)
    assert m and int(m.group(1)) >= 5 and int(m.group(2)) > 8 * 10 ** 6, out[-2000:]
    changed = re.findall(r"^@@ CHANGED .*$", out, re.M)
    assert not changed, "writable mappings changed by read-only pyref commands:\n" + \
        "\n".join(changed)
    assert "@@ control changed 1" in out, "the snapshot must see a deliberate write"


def test_every_command_ran(session):
    out, n = session
    assert out.count("@@CMD ") == n and "@@END" in out, out[-3000:]
    body = out[out.index("@@CMD 0"):out.index("@@END")]
    for bad in ("Python Exception", "Traceback", "internal error"):
        assert bad not in body, body[body.index(bad) - 2000:body.index(bad) + 500]
    assert "ring at 0x" in body and "owners (" in body, "the commands did real work"


def test_may_call_functions_restored(session):
    out, _ = session
    tail = out[out.index("@@END"):]
    assert "Permission to call functions in the program is on." in tail, tail[:500]
