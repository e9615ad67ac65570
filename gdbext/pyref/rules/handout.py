"""References handed out without an acquisition: the statements that give a reference away
and leave no record in the ring, read from the traced C source. No gdb here: the input is
the source's lines; inferior/diagnose.py reads them and says which functions CPython calls.

The ring records calls and refcount macros, never a `return` or an assignment, so three
common bugs leave a hole exactly where their culprit is:
- `return V;` of a pointer V the function borrowed (PyList_GET_ITEM, PyDict_GetItem, ...),
  with no INCREF of V on the way: a function CPython calls (a type slot, a method, a getter)
  gives its caller a new reference, and the caller's release takes one the lender owned;
- `return x->F;` of a struct field F whose reference the object holds: the same, the
  object's reference given away;
- `return Py_None;` (Py_True, Py_False) without an INCREF: a singleton's reference given
  away on every call (on 3.11 and earlier its count runs out);
and a fourth leaves a hole beside it:
- `x->F = V;` storing a borrowed V without an INCREF: the holder has no reference.

These rules are only asked when the ring already shows the harm and the hole (verdict.py:
the object freed inside CPython after traced code only borrowed it or still held it, a
singleton released below zero with no traced release to blame), and their answer must fit
it: the source must match the build (every recorded site of the object in that file names
its call on its line: source_matches()), the borrow's or acquisition's variable is found on
its recorded line, no INCREF of it stands between, and a `return` is in a function whose
address CPython holds (`called_by_cpython`, from diagnose.py). Anything less: no answer.
"""
import re

_IDENT = r"[A-Za-z_]\w*"
INCREF_CALLS = ("Py_INCREF", "Py_XINCREF", "Py_NewRef", "Py_XNewRef")
SINGLETON_NAMES = {"None": "Py_None", "True": "Py_True", "False": "Py_False"}
API_WINDOW = 3       # a call's recorded line may be its last; its name up to 2 lines above


def strip_c(text):
    """The C text with comments, string and character literals blanked (newlines kept), so
    that braces, names and statements are found only in code."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + (c if j - 1 > i else ""))
            i = j
        elif c == "#" and (i == 0 or text[i - 1] == "\n"):
            # a preprocessor line (its continuations too): kept, it holds no braces we want
            j = i
            while True:
                k = text.find("\n", j)
                if k < 0:
                    k = n
                    break
                if k > 0 and text[k - 1] == "\\":
                    j = k + 1
                    continue
                break
            out.append(re.sub(r"[{}]", " ", text[i:k]))
            i = k
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Function:
    """A C function definition: `name`, its lines `first` (the header's first) .. `last`
    (the closing brace), 1-based, `returns_object` (its header declares a pointer return,
    `PyObject *` or another object struct)."""

    def __init__(self, name, first, body, last, header):
        self.name, self.first, self.body, self.last = name, first, body, last
        self.returns_object = "*" in header.split(name)[0]


def functions(text):
    """{name: Function} of the top-level function definitions of a C source."""
    code = strip_c(text)
    out = {}
    depth = 0
    start = 0                 # where the current top-level declaration began
    opened = None             # the function whose body is open
    for m in re.finditer(r"[{};]", code):
        ch = m.group()
        i = m.start()
        if ch == "{":
            if depth == 0:
                header = code[start:i]
                fm = re.search(r"(%s)\s*\([^;{}=]*\)\s*$" % _IDENT, header)
                if fm and "=" not in header and not re.search(
                        r"\b(if|while|for|switch|return|sizeof)\s*$",
                        header[:fm.start(1)]):
                    body_line = code.count("\n", 0, i) + 1
                    first = code.count("\n", 0, start + len(header) - len(header.lstrip())) + 1
                    out.setdefault(fm.group(1), [first, body_line, None,
                                                 header[:fm.start(1)] + fm.group(1)])
                    cur = fm.group(1)
                else:
                    cur = None
                opened = cur
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
            if depth == 0:
                if opened is not None and out[opened][2] is None:
                    out[opened][2] = code.count("\n", 0, i) + 1
                opened = None
                start = i + 1
        elif depth == 0:
            start = i + 1
    return {k: Function(k, a, b, c, h) for k, (a, b, c, h) in out.items() if c is not None}


def function_at(funcs, line):
    """The Function whose lines hold `line`, or None."""
    return next((f for f in funcs.values() if f.first <= line <= f.last), None)


def source_matches(lines, sites):
    """Whether the source's `lines` (the file's, 0-based list) are those the build was made
    from: each (line, api) of `sites` (the object's recorded sites in this file) names its
    call or macro on its line or just above (a call written over several lines). A name
    that is not an identifier is not checked; no site at all is no match."""
    checked = 0
    for line, api in sites:
        if not api or not re.fullmatch(_IDENT, api):
            continue
        lo = max(line - API_WINDOW, 0)
        if line > len(lines) or not any(re.search(r"\b_?%s\w*" % written_name(api), t)
                                        for t in lines[lo:line]):
            return False
        checked += 1
    return checked > 0


def written_name(api):
    """The name a call is written with in the source, from the name the shim recorded:
    without the leading underscore, the `_SizeT` suffix and the version digit of the
    function a macro calls (PyModule_Create2 for PyModule_Create)."""
    return re.sub(r"(_SizeT)?\d*$", "", api.lstrip("_")) or api


def _incref_of(expr):
    """A pattern for an INCREF of the expression `expr` (an escaped pattern)."""
    return r"\b(%s)\s*\(\s*(\(\s*PyObject\s*\*\s*\)\s*)?%s\s*\)" % (
        "|".join(INCREF_CALLS), expr)


def _code_lines(text, active=None):
    """The code's lines (strip_c), 0-based; with `active` (the 1-based lines the build has
    code for: the line table), a line inside a preprocessor conditional the line table
    does not know is blanked: a branch the build left out (`#ifdef FIXED`) is not code."""
    lines = strip_c(text).split("\n")
    if active is None:
        return lines
    depth = 0
    for i, t in enumerate(lines):
        d = re.match(r"\s*#\s*(\w+)", t)
        if d:
            if d.group(1) in ("if", "ifdef", "ifndef"):
                depth += 1
            elif d.group(1) == "endif":
                depth = max(depth - 1, 0)
            lines[i] = ""
            continue
        if depth and (i + 1) not in active:
            lines[i] = ""
    return lines


def assigned_variable(code_line, api):
    """The variable a call's result is assigned to on its line (`row = PyList_GET_ITEM(`,
    `PyObject *row = ...`), or None."""
    m = re.search(r"\b(%s)\s*=\s*(\(\s*\w+\s*\*\s*\)\s*)?%s\s*\(" % (_IDENT, api),
                  code_line)
    return m.group(1) if m else None


def output_variables(code_line, api):
    """The variables a call writes through `&V` arguments on its line (the outputs of
    PyArg_ParseTuple and the like)."""
    if not re.search(r"\b%s\b" % api, code_line):
        return []
    return re.findall(r"&\s*(%s)\b" % _IDENT, code_line.split(api, 1)[1])


def returns_of(code, func, expr_pat, after=None):
    """Lines (1-based) of `return EXPR;` statements in `func` matching the pattern
    `expr_pat` (a cast to a pointer type allowed), after line `after` when given."""
    out = []
    lo = func.body if after is None else max(after, func.body)
    for n in range(lo, func.last + 1):
        t = code[n - 1]
        if re.search(r"\breturn\s+(\(\s*\w+\s*\*\s*\)\s*)?\(?\s*%s\s*\)?\s*;" % expr_pat, t):
            out.append(n)
    return out


def borrowed_return(text, func_name, line, api, active=None):
    """The line of `return V;` handing out the pointer V that `func_name` borrowed from
    `api` at `line`, with no INCREF of V and no new value of V in between: (line, V), or
    None. Exactly one such return, else None (the rule names one statement or nothing)."""
    code = _code_lines(text, active)
    func = functions(text).get(func_name)
    if func is None or not func.returns_object or not func.body <= line <= func.last:
        return None
    var = None
    for n in range(line, max(line - API_WINDOW, func.first - 1), -1):
        var = assigned_variable(code[n - 1], api)
        if var:
            break
    if var is None:
        return None
    v = re.escape(var)
    found = []
    for r in returns_of(code, func, v, after=line + 1):
        between = "\n".join(code[line:r - 1])
        if re.search(_incref_of(v), between) or \
                re.search(r"(^|[^=!<>])\b%s\s*=[^=]" % v, between) or \
                re.search(_incref_of(v), code[r - 1]):
            continue
        found.append(r)
    return (found[0], var) if len(found) == 1 else None


def stored_field(text, func_name, line, api, op, active=None):
    """The struct field an acquisition at `line` of `func_name` is stored in: `x->F =`
    on that line, or, for an INCREF of V (`Py_INCREF(V)`), a later `x->F = V;` in the
    function. (F, store line), or None."""
    code = _code_lines(text, active)
    func = functions(text).get(func_name)
    if func is None or not func.body <= line <= func.last:
        return None
    m = re.search(r"->\s*(%s)\s*=[^=]" % _IDENT, code[line - 1])
    if m:
        return m.group(1), line
    if op != "INCREF":
        return None
    m = re.search(r"\b(?:%s)\s*\(\s*(%s)\s*\)" % ("|".join(INCREF_CALLS), _IDENT),
                  code[line - 1])
    if not m:
        return None
    v = re.escape(m.group(1))
    for n in range(line, func.last + 1):
        s = re.search(r"->\s*(%s)\s*=\s*(\(\s*\w+\s*\*\s*\)\s*)?%s\s*;" % (_IDENT, v),
                      code[n - 1])
        if s:
            return s.group(1), n
    return None


def field_returns(text, field, called_by_cpython, active=None):
    """[(line, function)] of `return x->FIELD;` in functions CPython calls
    (`called_by_cpython(name)`) that take no reference to the field first."""
    return _returns_without_incref(text, r"%s\s*->\s*%s" % (_IDENT, re.escape(field)),
                                   called_by_cpython, active)


def singleton_returns(text, singleton, called_by_cpython, active=None):
    """[(line, function)] of `return Py_None;` (Py_True, Py_False) in functions CPython
    calls that take no reference to it in their body (no Py_INCREF(Py_None), no
    Py_NewRef(Py_None))."""
    name = SINGLETON_NAMES.get(singleton)
    if name is None:
        return []
    return _returns_without_incref(text, name, called_by_cpython, active)


def _returns_without_incref(text, expr, called_by_cpython, active):
    """[(line, function)], by line, of `return EXPR;` (the pattern `expr`) in functions
    returning an object pointer that CPython calls and that INCREF no EXPR."""
    code = _code_lines(text, active)
    out = []
    for func in functions(text).values():
        if not func.returns_object:
            continue
        body = "\n".join(code[func.body - 1:func.last])
        if re.search(_incref_of(expr), body):
            continue
        rets = returns_of(code, func, expr)
        if rets and called_by_cpython(func.name):
            out.extend((r, func.name) for r in rets)
    return sorted(out)


def borrowed_store(text, func_name, line, api, field=None, active=None):
    """The line of `x->F = V;` in `func_name` storing a pointer V that `api` lent it at
    `line` (an output `&V` or the assigned result), with no INCREF of V in the function:
    (line, F), or None. With `field`, only stores into that field. Exactly one such store,
    else None."""
    code = _code_lines(text, active)
    func = functions(text).get(func_name)
    if func is None or not func.body <= line <= func.last:
        return None
    names = []
    for n in range(line, max(line - API_WINDOW, func.first - 1), -1):
        names = output_variables(code[n - 1], api) or \
            [v for v in [assigned_variable(code[n - 1], api)] if v]
        if names:
            break
    body = "\n".join(code[func.body - 1:func.last])
    found = []
    for var in names:
        v = re.escape(var)
        if re.search(_incref_of(v), body):
            continue
        for n in range(line + 1, func.last + 1):
            s = re.search(r"->\s*(%s)\s*=\s*(\(\s*\w+\s*\*\s*\)\s*)?%s\s*;" % (_IDENT, v),
                          code[n - 1])
            if s and (field is None or s.group(1) == field):
                found.append((n, s.group(1)))
    return found[0] if len(found) == 1 else None


def field_read(code_line):
    """The struct fields a line reads (`x->F` not followed by an assignment)."""
    return [m.group(1) for m in re.finditer(r"->\s*(%s)\b(?!\s*=[^=])" % _IDENT,
                                            strip_c(code_line))]


# ---------------------------------------------------------------------------------------
# The rules as the verdict asks them: a `source` (inferior/sources.Sources, or a test's
# stand-in) with text(file, func), active(func), called_by_cpython(func), and for the
# singleton rule traced_files() [(file, func, [(line, api)])]: the ring's sites.
# ---------------------------------------------------------------------------------------
def _event(file_, line, func, what):
    from pyref.reader.sites import Site
    from pyref.rules.events import Event
    return Event(seq=-1, op=what, before=0, after=0, site=Site(0, file_, line, func, what.lower()))


def _checked_text(source, events, file_, func):
    """The text of `file_` when the object's recorded sites in it match it and the build's
    line table is known (without it a preprocessor branch left out would read as code),
    else None."""
    if source is None or not file_ or source.active(func) is None:
        return None
    text = source.text(file_, func)
    if text is None:
        return None
    sites = [(e.line, e.api) for e in events if e.file == file_ and e.line]
    return text if source_matches(text.split("\n"), sites) else None


def find_borrowed_return(source, life, borrow):
    """(Event 'RETURN', why) for the `return V;` that handed out the pointer `borrow` (a
    BORROW Event) lent to its function, or None. The borrow must be its function's last
    record of the object (an INCREF after it would be in the ring) and the function one
    CPython calls."""
    if borrow.func is None or any(
            e.seq > borrow.seq and (e.func, e.file) == (borrow.func, borrow.file)
            for e in life if e.file is not None):
        return None
    text = _checked_text(source, life, borrow.file, borrow.func)
    if text is None or not source.called_by_cpython(borrow.func):
        return None
    got = borrowed_return(text, borrow.func, borrow.line, borrow.api,
                          active=source.active(borrow.func))
    if got is None:
        return None
    line, var = got
    why = ("returned the pointer %s, borrowed from %s at line %d, without an INCREF: %s is "
           "called by CPython, which takes what it returns as a new reference and releases "
           "it — one the lender owned (return Py_NewRef(%s))" % (
               var, borrow.api, borrow.line, borrow.func, var))
    return _event(borrow.file, line, borrow.func, "RETURN"), why


def find_field_return(source, life, held):
    """(Event 'RETURN', why) for the `return x->F;` that gave away the reference an
    object holds in field F, or None: `held` is the acquisition (INCREF or NEW Event)
    traced code still held when CPython freed the object, F the field it was stored in
    (on its line, or `x->F = V;` after an INCREF of V), and exactly one function CPython
    calls returns that field without an INCREF."""
    if held.func is None:
        return None
    text = _checked_text(source, life, held.file, held.func)
    if text is None:
        return None
    active = source.active(held.func)
    stored = stored_field(text, held.func, held.line, held.api, held.op, active=active)
    if stored is None:
        return None
    field, at = stored
    rets = field_returns(text, field, source.called_by_cpython, active=active)
    if len(rets) != 1:
        return None
    line, func = rets[0]
    why = ("returns the field %s without an INCREF: the object holds that reference (taken "
           "at line %d, stored at line %d), and %s is called by CPython, which takes what it "
           "returns as a new reference and releases it (return Py_NewRef(...->%s))" % (
               field, held.line, at, func, field))
    return _event(held.file, line, func, "RETURN"), why


def find_borrowed_store(source, life, borrow, use=None):
    """(Event 'STORE', why) for the `x->F = V;` in the borrower's function that kept the
    pointer `borrow` lent it without an INCREF, or None. With `use` (where the dead
    object was used, in the same file), only a store into a field that line reads."""
    if borrow.func is None:
        return None
    text = _checked_text(source, life, borrow.file, borrow.func)
    if text is None:
        return None
    field = None
    if use is not None and use.file == borrow.file and use.line:
        lines = text.split("\n")
        read = field_read(lines[use.line - 1]) if use.line <= len(lines) else []
        if len(set(read)) != 1:
            return None
        field = read[0]
    got = borrowed_store(text, borrow.func, borrow.line, borrow.api, field=field,
                         active=source.active(borrow.func))
    if got is None:
        return None
    line, field = got
    why = ("stored the pointer borrowed from %s at line %d in the field %s without an "
           "INCREF: the holder has no reference, and the object was freed while it still "
           "pointed there (Py_NewRef(...) where it is stored; release it in tp_clear or "
           "tp_dealloc)" % (borrow.api, borrow.line, field))
    return _event(borrow.file, line, borrow.func, "STORE"), why


def find_singleton_returns(source, singleton):
    """[Event 'RETURN'] of the `return Py_None;` (Py_True, Py_False) without an INCREF in
    the traced files' functions CPython calls, first by file and line; [] without
    source."""
    if source is None or singleton not in SINGLETON_NAMES:
        return []
    out = []
    seen = set()
    for file_, func, sites in source.traced_files():
        text = source.text(file_, func)
        if text is None or file_ in seen or source.active(func) is None or \
                not source_matches(text.split("\n"), sites):
            continue
        seen.add(file_)
        for line, fn in singleton_returns(text, singleton, source.called_by_cpython,
                                          active=source.active(func)):
            out.append(_event(file_, line, fn, "RETURN"))
    return sorted(out, key=lambda e: (e.file, e.line))


def dropped_result(text, func_name, line, api, active=None):
    """Whether the new reference a call returns at `line` of `func_name` is dropped on
    every path: the call is a statement of its own (its result not assigned), or its
    result is assigned to a variable V that the function's code never mentions again
    except to test it against NULL (`V == NULL`, `!V`, `if (V)`) or to declare it — never
    returned, stored, passed to a call or released. A refcount macro (Py_INCREF,
    Py_RETURN_NONE...) is no call result."""
    if not api or api.startswith("Py_RETURN") or api in INCREF_CALLS or \
            not re.fullmatch(_IDENT, api):
        return False
    code = _code_lines(text, active)
    func = functions(text).get(func_name)
    if func is None or not func.body <= line <= func.last:
        return False
    name = written_name(api)
    at = None
    for n in range(line, max(line - API_WINDOW, func.first - 1), -1):
        if re.search(r"\b_?%s\w*\s*\(" % name, code[n - 1]):
            at = n
            break
    if at is None:
        return False
    t = code[at - 1]
    if re.match(r"\s*_?%s\w*\s*\(.*\)\s*;\s*$" % name, t):
        return True                   # `PyObject_CallOneArg(cb, x);`: the result ignored
    var = assigned_variable(t, r"_?%s\w*" % name)
    if var is None:
        return False
    v = re.escape(var)
    harmless = (r"\b%s\s*[=!]=\s*NULL\b" % v, r"\bNULL\s*[=!]=\s*%s\b" % v,
                r"!\s*%s\b" % v, r"\b(if|while)\s*\(\s*%s\s*\)" % v,
                r"\*\s*%s\s*(=\s*NULL\s*)?[;,)]" % v)
    for n in range(func.first, func.last + 1):
        rest = code[n - 1]
        if n == at:
            rest = re.sub(r"\b%s\s*=\s*(\(\s*\w+\s*\*\s*\)\s*)?_?%s\w*\s*\(" % (v, name), "",
                          rest, count=1)
        for pat in harmless:
            rest = re.sub(pat, " ", rest)
        if re.search(r"\b%s\b" % v, rest):
            return False
    return True
