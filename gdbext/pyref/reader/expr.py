"""What a pyref EXPR may not do: write the target. gdb evaluates an expression with its
side effects (`x = 0`, `x += 1`, `p++`, `--n` store into the inferior's memory), and every
pyref command promises to only read (function calls are refused by may-call-functions off
while a command runs). side_effect() finds an assignment or an increment or decrement
operator outside string and character literals, so the command refuses the expression
before gdb sees it.
"""
import re

# Longest operators first, so '<<=' is not read as '<' then '<='.
_TOKENS = re.compile(r"""
    "(?:[^"\\]|\\.)*"? | '(?:[^'\\]|\\.)*'?      # string and character literals
  | <<= | >>= | \+\+ | -- | [-+*/%&|^]= | == | != | <= | >= | =
""", re.X)
_WRITES = {"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", "++", "--"}


def side_effect(expr):
    """The first operator of `expr` that writes (an assignment, ++ or --), or None."""
    for m in _TOKENS.finditer(expr or ""):
        tok = m.group()
        if tok in _WRITES:
            return tok
    return None


def refuse_side_effects(expr):
    """A one-line reason when `expr` would write the target, else None."""
    op = side_effect(expr)
    if op is None:
        return None
    return ("%s: the expression contains '%s', which would write the target; pyref only "
            "reads (evaluate it with gdb's own print if you mean to)" % (expr.strip(), op))
