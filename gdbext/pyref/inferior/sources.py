"""The traced C source as rules/handout.py reads it, from the target's debug information:
a file's text (the path the ring's sites name, else the one DWARF gives for the
function), the lines the build has code for (the line table: a preprocessor branch left
out has none), and whether CPython calls a function (its address is stored in its
extension's data: a type slot, a method table, a getset). Nothing is called in the
inferior; a file that cannot be read is no source (the rules then answer nothing).
"""
import os
import re

import gdb

from pyref.errors import PyrefError
from pyref.inferior import target
from pyref.reader import columnar

MAX_SITES = 4096             # distinct sites of the ring resolved for traced_files()
MAX_SOURCE = 4 << 20          # bytes of one source file read
MAX_DATA = 16 << 20           # bytes of an extension's data searched for a function address
DATA_SECTIONS = (".data", ".data.rel.ro", ".data.rel", ".data.rel.local")


def _symbol(func):
    try:
        return gdb.lookup_static_symbol(func) or gdb.lookup_global_symbol(func)
    except (gdb.error, RuntimeError, ValueError):
        return None


class Sources:
    """Source text, line tables and callers, cached for one diagnosis."""

    def __init__(self, ringset=None):
        self._ringset = ringset
        self._files = None
        self._text = {}
        self._active = {}
        self._called = {}
        self._sections = None

    def traced_files(self):
        """[(file, func, [(line, api)])]: the files the ring's sites name, one function of
        each (for its debug information), and their recorded sites."""
        if self._files is None:
            from pyref.inferior import rings
            by_file = {}
            seen = set()
            for ring in (self._ringset.rings if self._ringset is not None else ()):
                # the sites in ring order, without a Record per slot (4 M on a big ring)
                for addr in columnar.sites_in_order(ring):
                    if addr in seen:
                        continue
                    seen.add(addr)
                    if len(seen) > MAX_SITES:
                        break
                    site = rings.site_of(addr)
                    if site is None or not site.file:
                        continue
                    f = by_file.setdefault(site.file, [site.func, []])
                    f[1].append((site.line, site.api))
            self._files = [(k, v[0], v[1]) for k, v in sorted(by_file.items())]
        return self._files

    def path(self, file_, func):
        """The readable path of a site's `file_` (as the build named it), or None."""
        if file_ and os.path.isabs(file_) and os.path.isfile(file_):
            return file_
        sym = _symbol(func) if func else None
        try:
            full = sym.symtab.fullname() if sym is not None and sym.symtab else None
        except (gdb.error, RuntimeError):
            full = None
        if full and os.path.isfile(full) and (
                not file_ or os.path.basename(full) == os.path.basename(file_)):
            return full
        return None

    def text(self, file_, func):
        """The file's text, or None."""
        p = self.path(file_, func)
        if p is None:
            return None
        if p not in self._text:
            try:
                with open(p, "rb") as f:
                    data = f.read(MAX_SOURCE + 1)
                self._text[p] = None if len(data) > MAX_SOURCE else \
                    data.decode("utf-8", "replace")
            except OSError:
                self._text[p] = None
        return self._text[p]

    def active(self, func):
        """The set of lines the function's file has code for in the build (its line
        table), or None when gdb has no line table for it."""
        sym = _symbol(func)
        if sym is None or sym.symtab is None:
            return None
        key = sym.symtab.filename
        if key not in self._active:
            try:
                self._active[key] = {e.line for e in sym.symtab.linetable() if e.line}
            except (gdb.error, RuntimeError, AttributeError):
                self._active[key] = None
        return self._active[key]

    def called_by_cpython(self, func):
        """Whether the function's address is stored in its extension's data sections (a
        type slot, a PyMethodDef or PyGetSetDef table): the code that calls it is
        CPython's, which takes what it returns as a new reference."""
        if func in self._called:
            return self._called[func]
        self._called[func] = False
        sym = _symbol(func)
        try:
            if sym is None or sym.addr_class != gdb.SYMBOL_LOC_BLOCK:
                return False
            addr = int(sym.value().address)
            objfile = sym.symtab.objfile.filename
        except (gdb.error, RuntimeError, AttributeError, ValueError):
            return False
        needle = (addr & ((1 << 64) - 1)).to_bytes(8, "little")
        budget = MAX_DATA
        for start, end in self._data_of(objfile):
            n = min(end - start, budget)
            budget -= n
            try:
                data = bytes(target.read(start, n))
            except (PyrefError, gdb.error, gdb.MemoryError, OSError):
                continue
            i = data.find(needle)
            while i >= 0:
                if (start + i) % 8 == 0:
                    self._called[func] = True
                    return True
                i = data.find(needle, i + 1)
            if budget <= 0:
                break
        return False

    def _data_of(self, objfile):
        """[(start, end)] of the data sections of one objfile, from `info files`."""
        if self._sections is None:
            self._sections = {}
            try:
                out = gdb.execute("info files", to_string=True)
            except (gdb.error, RuntimeError):
                out = ""
            for m in re.finditer(r"^\s*(0x[0-9a-f]+) - (0x[0-9a-f]+) is (\S+)(?: in (.+))?$",
                                 out, re.M):
                if m.group(3) in DATA_SECTIONS:
                    name = (m.group(4) or "").strip()
                    self._sections.setdefault(name, []).append(
                        (int(m.group(1), 16), int(m.group(2), 16)))
        got = self._sections.get(objfile)
        if got is None:
            real = os.path.realpath(objfile)
            got = next((v for k, v in self._sections.items()
                        if k and os.path.realpath(k) == real), [])
        return got


def add_dropped_singletons(ringset, rep):
    """Makes a leak row of `pyref leaks`' report `rep` (commands/leaks.py) of each
    singleton site (3.11 and earlier: rep["singleton_sites"] is empty on 3.12+) whose
    call result the traced source drops on every path (rules/handout.dropped_result): a
    reference to None that a call returned and the function never returned, stored,
    passed or released is a leak like any other, where Py_RETURN_NONE's is handed to the
    caller. Only when the file matches the ring's sites and its line table is known."""
    from pyref.inferior import objects
    from pyref.rules import handout
    sites = rep.get("singleton_sites") or []
    if not sites:
        return
    src = Sources(ringset)
    recorded = {f: s for f, _, s in src.traced_files()}
    addr = {name: target.symbol_address(sym) for sym, name in
            objects.SINGLETON_SYMBOLS.items()}
    for s in sites:
        f, line, func, api = s["file"], s["line"], s["function"], s["api"]
        text = src.text(f, func)
        active = src.active(func)
        if text is None or active is None or not addr.get(s["object"]) or \
                not handout.source_matches(text.split("\n"), recorded.get(f, [])) or \
                not handout.dropped_result(text, func, line, api, active=active):
            continue
        s["leak"] = True
        rep["groups"].append({
            "file": f, "line": line, "function": func, "api": api,
            "type": "%sType" % s["object"], "count": s["count"], "objects": 1,
            "example": "0x%x" % addr[s["object"]], "singleton": s["object"],
            "lost": {"file": f, "line": None, "function": func,
                     "note": "every path of %s: %s's result (%s here) is never returned, "
                             "stored, passed or released (read in the source)" % (
                                 func, api, s["object"])}})
        left = rep.get("singletons", {}).get(s["object"], 0) - s["count"]
        if left > 0:
            rep["singletons"][s["object"]] = left
        else:
            rep.get("singletons", {}).pop(s["object"], None)
        rep["total"] = rep.get("total", 0) + s["count"]
        rep["sites"] = rep.get("sites", 0) + 1
