"""Text from the target made safe for a terminal: a type name, a co_filename, a repr or a
site's file name in a crafted core may hold escape sequences (ESC [2J clears the screen,
an OSC sequence retitles the window or writes the clipboard). escape() shows every control
character as a Python-style escape (\\x1b, \\x9b, \\u202e) and keeps newline and tab, so
what pyref prints is exactly what the target held, and nothing is interpreted.

commands/__init__.py passes everything a command writes through escape(); JSON output
needs nothing more (json.dumps escapes control characters itself).
"""
import re

# C0 but tab and newline, DEL, C1, and the bidirectional overrides and isolates (they
# reorder what follows them on the line: "Trojan Source").
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                      "\u2066-\u2069]")


def _one(m):
    c = ord(m.group())
    return "\\x%02x" % c if c < 0x100 else "\\u%04x" % c


def escape(text):
    """`text` with its control characters (but newline and tab) written as escapes."""
    return _CONTROL.sub(_one, text)


def escape_line(text):
    """escape() for one line: newlines and tabs escaped too."""
    return escape(text).replace("\n", "\\n").replace("\t", "\\t")
