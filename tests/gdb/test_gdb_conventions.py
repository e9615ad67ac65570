"""pyref behaves like a part of GDB: help in GDB's shape for every registered command,
completion of subcommands, options and expressions, `set/show pyref` parameters, the
`$pyref_*` convenience functions on a live process and a core, output styled with GDB's
own styles only when styling is on, and --json on every reporting command.

The registry is walked inside gdb (commands.registered()), so a command added later is
checked without touching this file."""
import json
import os
import pty
import re
import subprocess

import pytest

import pyreftest

PYTHON = "/usr/bin/python3.11d"
CHURN = pyreftest.ROUTES_CHURN
# Commands that act rather than report (they set watchpoints and log as the program runs);
# every other command must offer --json.
NOT_REPORTING = {"watch"}
ESC = "\x1b["

DUMP = r'''
import argparse, json, os
import gdb
from pyref import commands

def run(cmd):
    try:
        return gdb.execute(cmd, to_string=True)
    except gdb.error as e:
        return "ERROR: %s" % e

gdb.execute("set max-completions 500")
out = {"commands": {}}
for name, cmd in sorted(commands.registered().items()):
    acts = [a for a in cmd.parser._actions if a.help != argparse.SUPPRESS]
    out["commands"][name] = {
        "summary": type(cmd).summary,
        "examples": list(type(cmd).examples),
        "options": [o for a in acts for o in a.option_strings],
        "positionals": [a.metavar or a.dest.upper() for a in acts if not a.option_strings],
        "help": run("help pyref " + name),
        "declared": cmd.help_text(),
        "complete_dash": run("complete pyref %s -" % name),
    }
for key, cmd in (("help_pyref", "help pyref"), ("apropos", "apropos pyref"),
                 ("complete_history_j", "complete pyref history --j"),
                 ("complete_expr", "complete pyref show _Py_NoneSt"),
                 ("complete_expr_after_option", "complete pyref history -n 3 _Py_TrueSt"),
                 ("complete_function", "complete help function pyref_")):
    out[key] = run(cmd)
with open(os.environ["PYREF_DUMP"], "w") as f:
    json.dump(out, f)
'''


def lines(text):
    return [line for line in text.splitlines() if line.strip()]


def completions(text):
    return sorted(lines(text))


# ---------------------------------------------------------------------------------------
# The registry, dumped from inside gdb
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("conv")
    script, dump = d / "dump.py", d / "dump.json"
    script.write_text(DUMP)
    env = dict(os.environ, PYREF_DUMP=str(dump))
    p = subprocess.run(pyreftest.gdb_command(["source " + str(script)], [PYTHON]),
                       capture_output=True, text=True, timeout=300, env=env)
    assert "Python Exception" not in p.stdout + p.stderr, p.stdout + p.stderr
    assert dump.exists(), p.stdout + p.stderr
    reg = json.loads(dump.read_text())
    assert reg["commands"], "no pyref subcommand registered"
    # gdb.execute() drops a trailing space, which these completions are about: -ex keeps it.
    trailing = (("complete_sub", "complete pyref "), ("complete_set", "complete set pyref "),
                ("complete_color", "complete set pyref color "))
    cmds = []
    for key, cmd in trailing:
        cmds += ["echo @@%s\\n" % key, cmd]
    out = pyreftest.gdb_batch(cmds + ["echo @@end\\n"])
    for key, _ in trailing:
        reg[key] = out.split("@@%s\n" % key, 1)[1].split("@@", 1)[0]
    return reg


def failures(registry, check):
    """{name: problem} for every command where check(name, info) returns a problem."""
    out = {}
    for name, info in registry["commands"].items():
        problem = check(name, info)
        if problem:
            out[name] = problem
    return out


def test_help_pyref_lists_every_command(registry):
    text = registry["help_pyref"]
    assert failures(registry, lambda n, i: None if "pyref %s -- %s" % (n, i["summary"])
                    in text else "missing from `help pyref`") == {}
    assert failures(registry, lambda n, i: None if "pyref %s -- " % n in registry["apropos"]
                    else "missing from `apropos pyref`") == {}


def test_every_command_help_is_its_declared_help(registry):
    """`help pyref NAME` is what the command declares (Subcommand.help_text()): gdb read
    the docstring the framework built."""
    assert failures(registry, lambda n, i: None if i["help"].strip() == i["declared"].strip()
                    else "help differs from help_text()") == {}


def test_help_shape_of_every_command(registry):
    """GDB's shape: the summary line, `Usage: pyref NAME ...`, each argument described,
    examples that are the command itself."""
    def check(name, info):
        text = info["help"].splitlines()
        s = info["summary"]
        if not s or "\n" in s or not s[0].isupper() or not s.endswith("."):
            return "summary must be one sentence on one line: %r" % s
        if text[0] != s:
            return "first line of help is not the summary: %r" % text[0]
        if not text[1].startswith("Usage: pyref %s" % name):
            return "second line is not `Usage: pyref %s ...`: %r" % (name, text[1])
        body = "\n".join(text[2:])
        for word in info["options"] + info["positionals"]:
            if not re.search(r"^  .*%s" % re.escape(word), body, re.M):
                return "argument %s not described" % word
        for ex in info["examples"]:
            if not (ex + " ").startswith("pyref %s " % name):
                return "example %r is not a pyref %s command" % (ex, name)
            if "  (gdb) " + ex not in body:
                return "example %r not shown" % ex
        return None
    assert failures(registry, check) == {}


# ---------------------------------------------------------------------------------------
# Completion
# ---------------------------------------------------------------------------------------
def test_complete_subcommands(registry):
    assert completions(registry["complete_sub"]) == \
        sorted("pyref " + n for n in registry["commands"])


def test_complete_options_of_every_command(registry):
    def check(name, info):
        want = sorted("pyref %s %s" % (name, o) for o in info["options"])
        got = completions(info["complete_dash"])
        return None if got == want else "completes %s, options are %s" % (got, want)
    assert failures(registry, check) == {}
    assert completions(registry["complete_history_j"]) == ["pyref history --json"]


def test_complete_expressions(registry):
    assert completions(registry["complete_expr"]) == ["pyref show _Py_NoneStruct"]
    assert completions(registry["complete_expr_after_option"]) == \
        ["pyref history -n 3 _Py_TrueStruct"]


def test_complete_settings_and_functions(registry):
    assert completions(registry["complete_set"]) == [
        "set pyref color", "set pyref python-stack", "set pyref records",
        "set pyref shim-frames"]
    assert completions(registry["complete_color"]) == [
        "set pyref color auto", "set pyref color off", "set pyref color on"]
    assert completions(registry["complete_function"]) == [
        "help function pyref_refcnt", "help function pyref_state", "help function pyref_type"]


# ---------------------------------------------------------------------------------------
# --json
# ---------------------------------------------------------------------------------------
def test_every_reporting_command_has_json(registry):
    assert failures(registry, lambda n, i: None if n in NOT_REPORTING or "--json" in
                    i["options"] else "a reporting command without --json") == {}


# ---------------------------------------------------------------------------------------
# set/show pyref
# ---------------------------------------------------------------------------------------
def test_settings():
    out = pyreftest.gdb_batch([
        "show pyref records", "show pyref python-stack", "show pyref color",
        "set pyref records 20", "set pyref python-stack off", "set pyref color on",
        "show pyref",
        "python from pyref.commands import settings; "
        "print('values', settings.records(), settings.python_stack(), settings.color())",
        "set pyref records unlimited", "python print('unlimited', settings.records())",
        "set pyref records 0", "python print('zero', settings.records())",
        "set pyref color bogus", "set pyref records -1", "set pyref python-stack maybe",
        "help set pyref records", "help show pyref color", "help set pyref"])
    assert "Python Exception" not in out, out
    assert "The number of ring records shown per object is unlimited." in out
    assert "Showing the Python stack in pyref commands is on." in out
    assert "Styling of pyref's output is auto." in out
    assert "pyref color:  Styling of pyref's output is on.\n" \
           "pyref python-stack:  Showing the Python stack in pyref commands is off.\n" \
           "pyref records:  The number of ring records shown per object is 20.\n" in out, out
    assert "values 20 False on" in out
    assert "unlimited None" in out and "zero None" in out
    assert 'Undefined item: "bogus".' in out
    assert "integer -1 out of range" in out
    assert '"on" or "off" expected.' in out
    assert "Set how many ring records pyref commands show for one object by default.\n" \
           "A command that lists" in out
    assert "Show when pyref styles its output with GDB's styles.\n" in out
    for name in ("set pyref color", "set pyref python-stack", "set pyref records"):
        assert name + " -- Set " in out


# ---------------------------------------------------------------------------------------
# A live process and a core of the routes extension
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routes(build_extension):
    return build_extension(pyreftest.ROUTES_SRC, PYTHON).moddir


@pytest.fixture(scope="module")
def core(routes_core):
    return routes_core


FUNCTION_CHECKS = [
    "print $pyref_refcnt($obj)", "print $pyref_type($obj)", "print $pyref_state($obj)",
    "pyref show $obj",
    "print $pyref_type(_Py_NoneStruct)", "print $pyref_state(&_Py_NoneStruct)",
    "print $pyref_state(0)", "print $pyref_state(8)",
    "print $_streq($pyref_state((PyObject *) $obj), \"live\")",
    "print $pyref_refcnt(0)", "print $pyref_refcnt(8)", "print $pyref_type()",
    "print $pyref_type(1.5)", "print $pyref_type(&_PyRuntime)",
]


def check_functions(out):
    assert "Python Exception" not in out, out
    values = dict(re.findall(r"^\$(\d+) = (.*)$", out, re.M))
    shown = int(re.search(r"^refcount: (\d+)$", out, re.M).group(1))
    assert values["1"] == str(shown), out  # $pyref_refcnt agrees with pyref show
    assert values["2"] == '"object"' and values["3"] == '"live"', out
    assert values["4"] == '"NoneType"' and values["5"] == '"live"', out
    assert values["6"] == '"not an object"' and values["7"] == '"unreadable"', out
    assert values["8"] == "1", out
    for line in ("pyref: $pyref_refcnt: 0x0 is not an object: NULL pointer",
                 "pyref: $pyref_refcnt: cannot read memory at 0x8: no object there",
                 "pyref: $pyref_type: takes one argument, an object's address (0 given)",
                 "pyref: $pyref_type: a double is not an address"):
        assert re.search("^%s$" % re.escape(line), out, re.M), out
    assert re.search(r"^pyref: \$pyref_type: 0x[0-9a-f]+ has no type: ", out, re.M), out


def test_functions_on_a_core(core):
    path, obj = core
    out = pyreftest.gdb_batch(["set $obj = %s" % obj] + FUNCTION_CHECKS, args=[PYTHON, path])
    check_functions(out)


def test_functions_on_a_live_process(routes, tmp_path):
    stdout = tmp_path / "stdout.txt"
    out = pyreftest.gdb_batch(
        ["handle SIGABRT stop nopass",
         "run %s > %s" % (" ".join(pyreftest.routes_driver_args(routes)), stdout),
         "python import re; gdb.set_convenience_variable('obj', int(re.search("
         "r'^obj (0x[0-9a-f]+)$', open(%r).read(), re.M).group(1), 16))" % str(stdout)] +
        FUNCTION_CHECKS, args=[PYTHON])
    assert "SIGABRT" in out, out
    check_functions(out)


def test_functions_without_a_target():
    out = pyreftest.gdb_batch(["print $pyref_state(0)", "help function pyref_refcnt"])
    assert "pyref: $pyref_state: no process or core file" in out
    assert "Usage: $pyref_refcnt(OBJ)" in out
    assert "Python Exception" not in out


def test_records_setting_is_history_default(core):
    path, obj = core
    out = pyreftest.gdb_batch(["set pyref records 2", "pyref history " + obj,
                               "pyref history -n 3 " + obj], args=[PYTHON, path])
    # the churn's pairs plus the BORROW of the argument by PyArg_ParseTuple
    assert "%d transitions of %s, last 2 shown" % (2 * CHURN + 1, obj) in out, out
    assert "%d transitions of %s, last 3 shown" % (2 * CHURN + 1, obj) in out, out


# ---------------------------------------------------------------------------------------
# Styling: GDB's own styles, only when styling is on
# ---------------------------------------------------------------------------------------
def gdb_tty(commands, args=()):
    """gdb -batch with its output on a pseudo-terminal, as in an interactive session.
    Returns the output with the terminal's CRLF turned back into LF."""
    cmd = pyreftest.gdb_command(commands, args)
    master, slave = pty.openpty()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave,
                         stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    p.wait(timeout=300)
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


STYLE_PROBE = ("python from pyref.commands import settings; print('probe', repr(settings.styled("
               "'0x10', 'address')), repr(settings.styled('f', 'function')), "
               "repr(settings.styled('a.c', 'file')))")


def probe(out):
    return re.findall(r"^probe (.*)$", out, re.M)


def test_styled_on_a_terminal_when_styling_is_on():
    out = gdb_tty(["set style enabled on", STYLE_PROBE,
                   "set style address foreground red", "set style address intensity bold",
                   STYLE_PROBE,
                   "set pyref color off", STYLE_PROBE,
                   "set pyref color auto", "set style enabled off", STYLE_PROBE])
    assert probe(out) == [
        r"'\x1b[34m0x10\x1b[m' '\x1b[33mf\x1b[m' '\x1b[32ma.c\x1b[m'",
        r"'\x1b[31;1m0x10\x1b[m' '\x1b[33mf\x1b[m' '\x1b[32ma.c\x1b[m'",
        "'0x10' 'f' 'a.c'",
        "'0x10' 'f' 'a.c'"], out


def test_plain_into_a_pipe_unless_color_on():
    out = pyreftest.gdb_batch(["set style enabled on", STYLE_PROBE,
                               "set pyref color on", STYLE_PROBE,
                               "set style enabled off", STYLE_PROBE])
    assert probe(out) == ["'0x10' 'f' 'a.c'",
                          r"'\x1b[34m0x10\x1b[m' '\x1b[33mf\x1b[m' '\x1b[32ma.c\x1b[m'",
                          "'0x10' 'f' 'a.c'"], out


def reporting(core):
    path, obj = core
    return ["pyref ring", "pyref history " + obj, "pyref show " + obj]


def test_commands_plain_when_styling_is_off(core):
    out = gdb_tty(["set style enabled off"] + reporting(core), args=[PYTHON, core[0]])
    assert "written" in out and "transitions of" in out and "refcount:" in out, out
    assert ESC not in out, out


def test_commands_styled_only_with_gdb_escapes(core):
    """With styling on, whatever a command styles uses GDB's sequences and nothing else."""
    out = gdb_tty(["set style enabled on"] + reporting(core), args=[PYTHON, core[0]])
    assert "transitions of" in out, out
    for seq in re.findall(r"\x1b\[[^a-zA-Z]*[a-zA-Z]", out):
        assert re.fullmatch(r"\x1b\[(?:[34][0-7](?:;[34][0-7])?(?:;[12])?|[12])?m", seq), seq


def test_json_is_never_styled(core):
    path, obj = core
    out = gdb_tty(["set style enabled on", "set pyref color on", "pyref ring --json",
                   "echo ====\\n", "pyref history --json " + obj], args=[PYTHON, path])
    out = out.replace(ESC + "m", "")  # GDB's own style reset, which it writes after `echo`
    blocks = re.findall(r"^\{\n.*?^\}$", out, re.M | re.S)
    assert len(blocks) == 2, out
    for b in blocks:
        assert ESC not in b, b
        json.loads(b)
