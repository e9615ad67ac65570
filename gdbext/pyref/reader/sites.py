"""Call sites: what a ring record's `site` points at (a `struct pyref_site`,
docs/ring-format.md: magic, line, file, function, C-API call) read as a Site, the one type
pyref names a line of C with; and the bounded NUL-terminated string reader both use.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from pyref.errors import READ_ERRORS
from pyref.reader.bulk import PAGE
from pyref.reader.ringformat import SITE_MAGIC

_SITE = struct.Struct("<IIQQQ")


@dataclass(frozen=True)
class Site:
    """A C location: where a ring record was written (a `struct pyref_site`: `api` is the
    C-API call or macro recorded there) or where gdb's debug info places an instruction
    (`inline`: the innermost inline function it belongs to). `file` is as the debug info
    names it, `line` None when unknown."""
    addr: int
    file: str
    line: int | None
    func: str
    api: str | None = None
    inline: str | None = None

    def short(self) -> str:
        """'file.c:LINE (func)', the file without its directory: how every report names a
        line of C."""
        return "%s:%s (%s)" % (self.file.rsplit("/", 1)[-1], self.line, self.func)


def where(site) -> str:
    """site.short(), or 'inside CPython' for None: a record the runtime wrote without a
    site (FREE, FORK)."""
    return "inside CPython" if site is None else site.short()


MAX_STRING = 4096


def read_cstring(read, addr: int, limit: int = MAX_STRING):
    """A NUL-terminated string at `addr` (at most `limit` bytes, read page by page so a
    string near the end of a mapping is still found), decoded as UTF-8 with replacement;
    None if unreadable. A string without NUL within the limit is cut and ends in '...'."""
    if not addr:
        return None
    out = b""
    a = addr
    while len(out) < limit:
        n = min(PAGE - a % PAGE, limit - len(out))
        try:
            got = bytes(read(a, n))
        except READ_ERRORS:
            if not out:
                return None
            break
        z = got.find(b"\0")
        if z != -1:
            return (out + got[:z]).decode("utf-8", "replace")
        out += got
        a += n
        if len(got) < n:
            break
    return out.decode("utf-8", "replace") + "..."


def read_site(read, addr: int, cache: dict | None = None):
    """The Site at `addr` (a `struct pyref_site`), or None when addr is 0, unreadable or
    lacks the site magic. `cache`, a dict the caller keeps per target, memoises results
    (including None) by address; there is no module-level cache, so nothing goes stale
    when the target changes."""
    if cache is not None and addr in cache:
        return cache[addr]
    site = None
    if addr:
        try:
            raw = bytes(read(addr, _SITE.size))
        except READ_ERRORS:
            raw = b""
        if len(raw) == _SITE.size:
            magic, line, file_p, func_p, api_p = _SITE.unpack(raw)
            if magic == SITE_MAGIC:
                site = Site(addr, read_cstring(read, file_p) or "?", line,
                            read_cstring(read, func_p) or "?",
                            read_cstring(read, api_p) if api_p else None)
    if cache is not None:
        cache[addr] = site
    return site
