"""pyref's settings (`set pyref ...` / `show pyref ...`) and the styling of its output.

Settings, each a gdb.Parameter under the `set pyref` / `show pyref` prefixes:

    set pyref records N|unlimited   records a command shows for one object by default
                                    (`pyref history` without -n); default unlimited
    set pyref python-stack on|off   show the Python stack beside C sites; default on
    set pyref color auto|on|off     style pyref's output with GDB's styles; default auto
    set pyref shim-frames on|off    show the frames of pyref's shim in backtraces; default
                                    off (commands/backtrace.py hides them)

Commands read them through records(), python_stack(), color() and shim_frames(), never
through gdb.parameter() themselves, so that the names live in one place.

Styling uses GDB's own styles (`show style address`, `show style function`...), so pyref's
addresses look like GDB's addresses and follow the user's colour choices. GDB 13 has no
Python API for styles (gdb.Style came in GDB 17), so the escape sequences are the ones
GDB itself emits for those settings: ESC[<fg 30-37>;<bg 40-47>;<1 bold|2 dim>m ... ESC[m.
When to style:
  - never when `set style enabled off` (GDB's switch; NO_COLOR turns it off at startup);
  - `set pyref color auto`: as GDB does, only when its standard output is a terminal;
  - `set pyref color on`: also into a pipe or file (for `less -R`, or a test);
  - `set pyref color off`: never.
Never style --json output. Output captured with gdb.execute(..., to_string=True) from a
terminal session is styled under `auto` (GDB 13 does not tell Python it is capturing).

Looking a GDB setting up costs ~4 us, so a command that styles many fields takes one
snapshot per run:

    st = settings.styler()
    for rec in records:
        write("%s %s\n" % (st("0x%x" % rec.obj, "address"), st(rec.func, "function")))

and a one-off can call styled(text, style) directly.
"""
import os

import gdb


# ---------------------------------------------------------------------------------------
# The `set pyref` and `show pyref` prefixes
# ---------------------------------------------------------------------------------------
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
        gdb.write(show_all())


_prefixes = {}  # "set pyref" / "show pyref" -> the prefix command (created once)


def _parameter_prefixes():
    """Creates the `set pyref` and `show pyref` prefix commands (once): a gdb.Parameter
    named "pyref NAME" needs them."""
    if not _prefixes:
        _prefixes["set pyref"], _prefixes["show pyref"] = _SetPyref(), _ShowPyref()


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------
class _Parameter(gdb.Parameter):
    """A `pyref NAME` parameter: creates the `set pyref` / `show pyref` prefixes first,
    prints nothing on `set` (as GDB's own settings), and shows "<what> is <value>."."""

    what = ""  # "The number of ..." — the subject of the `show` sentence

    def __init__(self, name, kind, *args):
        _parameter_prefixes()
        self.name = "pyref " + name
        super().__init__(self.name, gdb.COMMAND_DATA, kind, *args)

    def get_set_string(self):
        return ""

    def get_show_string(self, svalue):
        return "%s is %s." % (self.what, svalue)


class Records(_Parameter):
    """A command that lists an object's ring records (pyref history) shows its most recent
N records unless given -n. "unlimited" or 0 shows them all (the default)."""

    set_doc = "Set how many ring records pyref commands show for one object by default."
    show_doc = "Show how many ring records pyref commands show for one object by default."
    what = "The number of ring records shown per object"

    def __init__(self):
        super().__init__("records", gdb.PARAM_UINTEGER)  # 0 = unlimited, as in GDB
        self.value = None  # unlimited


class PythonStack(_Parameter):
    """When on, commands that report where something happened add the interpreter's Python
frames (file, line, function) to the C sites; off keeps their output to the C side."""

    set_doc = "Set whether pyref commands show the Python stack."
    show_doc = "Show whether pyref commands show the Python stack."
    what = "Showing the Python stack in pyref commands"

    def __init__(self):
        super().__init__("python-stack", gdb.PARAM_BOOLEAN)
        self.value = True


class Color(_Parameter):
    """When pyref styles its output with GDB's styles (set style address/function/filename/
highlight ...). "auto" styles when GDB does: `set style enabled on` and output to a
terminal. "on" styles whenever `set style enabled` is on, also into a pipe or a file.
"off" never styles. --json output is never styled."""

    set_doc = "Set when pyref styles its output with GDB's styles."
    show_doc = "Show when pyref styles its output with GDB's styles."
    what = "Styling of pyref's output"

    def __init__(self):
        super().__init__("color", gdb.PARAM_ENUM, ["auto", "on", "off"])
        self.value = "auto"


class ShimFrames(_Parameter):
    """pyref's Python.h shim wraps each reference-count macro and C-API call in an inline
function (pyref_incref, pyref_decref, ... in shim/Python.h and the C-API wrappers), which
gdb shows as frames of their own. When off (the default), backtraces hide them, so that
the frame after CPython's is the line of the extension that made the call; pyref explain,
why and watch look past them whatever this says. On shows them (as `disable
frame-filter global pyref-shim-frames` does)."""

    set_doc = "Set whether backtraces show the frames of pyref's shim."
    show_doc = "Show whether backtraces show the frames of pyref's shim."
    what = "Showing the frames of pyref's shim in backtraces"

    def __init__(self):
        super().__init__("shim-frames", gdb.PARAM_BOOLEAN)
        self.value = False


_params = {}  # name -> the registered Parameter (created once, even if loaded twice)


def register():
    """Creates the parameters (once: registering twice is harmless)."""
    for cls in (Records, PythonStack, Color, ShimFrames):
        key = cls.__name__
        if type(_params.get(key)) is not cls:
            _params[key] = cls()


def _value(cls, default):
    p = _params.get(cls.__name__)
    return default if p is None else p.value


def records():
    """The default number of records to show per object: an int > 0, or None (all)."""
    n = _value(Records, None)
    return None if not n else int(n)


def python_stack():
    """True when commands should show Python stacks."""
    return bool(_value(PythonStack, True))


def color():
    """'auto', 'on' or 'off'."""
    return _value(Color, "auto")


def shim_frames():
    """True when backtraces should show the shim's frames."""
    return bool(_value(ShimFrames, False))


def set_shim_frames(on):
    """Sets `pyref shim-frames` (for `enable/disable frame-filter`, which the backtrace
    filter follows)."""
    p = _params.get(ShimFrames.__name__)
    if p is not None:
        p.value = bool(on)


def show_all():
    """What `show pyref` prints, as GDB's `show print` does: one "pyref NAME:  sentence"
    line per setting, sorted by name."""
    lines = []
    for p in sorted(_params.values(), key=lambda p: p.name):
        text = gdb.execute("show " + p.name, to_string=True).strip()
        lines.append("%s:  %s\n" % (p.name, text))
    return "".join(lines)


# ---------------------------------------------------------------------------------------
# Styling
# ---------------------------------------------------------------------------------------
# pyref's style names -> GDB's (`set style NAME ...`).
STYLES = {"address": "address", "function": "function", "file": "filename",
          "highlight": "highlight", "variable": "variable", "metadata": "metadata",
          "title": "title"}
_COLORS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
_INTENSITY = {"bold": "1", "dim": "2"}
RESET = "\033[m"


def _param(name, default=None):
    try:
        return gdb.parameter(name)
    except (gdb.error, RuntimeError):
        return default


def _escape(gdb_style):
    """The escape sequence GDB emits for `set style GDB_STYLE ...`, or '' when that style
    sets nothing (or GDB does not know it)."""
    codes = []
    fg = _param("style %s foreground" % gdb_style)
    bg = _param("style %s background" % gdb_style)
    if fg in _COLORS:
        codes.append(str(30 + _COLORS.index(fg)))
    if bg in _COLORS:
        codes.append(str(40 + _COLORS.index(bg)))
    intensity = _INTENSITY.get(_param("style %s intensity" % gdb_style))
    if intensity:
        codes.append(intensity)
    return "\033[%sm" % ";".join(codes) if codes else ""


def _stdout_is_terminal():
    try:
        return os.isatty(1)
    except OSError:
        return False


def enabled():
    """True when pyref's output is to be styled now (see the module docstring)."""
    mode = color()
    if mode == "off" or not _param("style enabled", False):
        return False
    return mode == "on" or _stdout_is_terminal()


class Styler:
    """A snapshot of the styling settings: call it as st(text, style). Take one per
    command run; it does not see settings changed after it was made."""

    def __init__(self):
        self.on = enabled()
        self._codes = {}

    def __call__(self, text, style):
        if not self.on:
            return text
        code = self._codes.get(style)
        if code is None:
            code = self._codes[style] = _escape(STYLES.get(style, style))
        return code + text + RESET if code and text else text


def styler():
    """A Styler for the current settings."""
    return Styler()


def styled(text, style):
    """`text` in GDB's `style` ("address", "function", "file", "highlight", "variable",
    "metadata", "title") when styling is on, else `text` unchanged."""
    return Styler()(text, style)
