"""Is an extension module traced? Read from its ELF file alone (no import, no gdb): what
`pyref-config --check EXT.so` prints, and what the gdb side says when a ring stays empty.

A traced build leaves three marks in the file (reader/elf.py reads them):
  - the shim's site records (`struct pyref_site`, ringformat.SITE_MAGIC), one per macro or
    C-API call it wrapped, in the module's data;
  - the runtime's symbols the shim's inline code uses (pyref_tls_thread, pyref_hot, ...):
    undefined in .dynsym when the runtime is libpyref.so, defined when it was linked in
    statically (`--static-libs`, a ring of the module's own);
  - with the shared runtime, libpyref.so among its DT_NEEDED libraries.
Which marks are missing says what went wrong in the build:
  - libpyref.so needed, no site and no pyref symbol used: the compiler read the
    interpreter's Python.h, not the shim's (the shim's -I came after Python's, or not at
    all): the module runs untraced and the ring stays empty;
  - pyref symbols used but no runtime (none defined, libpyref.so not needed): the link
    lacked `pyref-config --libs`, and the import fails with "undefined symbol: pyref_...";
  - no mark at all: built without pyref-config's flags.

`check(path)` gives a Check; `main(argv)` is `pyref-config --check`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

from pyref.reader import elf
from pyref.reader.ringformat import SITE_MAGIC

PREFIX = "pyref_"
RUNTIME = "libpyref.so"
MAX_FILE = 512 << 20          # bytes of a module searched for site records
# Where the dynamic loader looks after RUNPATH (ld.so's defaults on Debian's x86-64).
SYSTEM_LIB_DIRS = ("/lib", "/usr/lib", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                   "/usr/local/lib")
# The symbol only the runtime defines: a module defining it has the runtime linked in.
RUNTIME_SYMBOL = "pyref_ring"


@dataclass
class Check:
    """What one module shows. `traced` is the answer; `reason` one line saying why (what
    is missing and what to change), `details` the facts behind it."""
    path: str
    traced: bool = False
    reason: str = ""
    sites: int = 0
    needs_runtime: bool = False       # libpyref.so in DT_NEEDED
    runtime_found: str | None = None  # where libpyref.so resolves, when it does
    static_runtime: bool = False      # the runtime is linked in
    uses: list = field(default_factory=list)   # undefined pyref_* symbols

    def text(self):
        """The lines `pyref-config --check` prints."""
        head = "%s: %s" % (self.path, "traced" if self.traced else "NOT traced")
        return "%s: %s" % (head, self.reason)


def count_sites(data: bytes) -> int:
    """Site records in a file's bytes: the magic at an 8-byte aligned offset (the struct's
    alignment; sections keep their file offset and address congruent)."""
    magic = SITE_MAGIC.to_bytes(4, "little")
    n = 0
    i = data.find(magic)
    while i != -1:
        if i % 8 == 0:
            n += 1
        i = data.find(magic, i + 1)
    return n


def _resolve(needed, runpaths, origin):
    """The path libpyref.so loads from for a module in directory `origin`: its RUNPATH
    (or RPATH) entries, LD_LIBRARY_PATH, then the system directories; None when absent."""
    dirs = []
    for rp in runpaths:
        dirs += [d.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
                 for d in rp.split(":") if d]
    dirs += [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    dirs += list(SYSTEM_LIB_DIRS)
    for d in dirs:
        p = os.path.join(d, needed)
        if os.path.exists(p):
            return p
    return None


def check(path, sites=True) -> Check:
    """The Check of the module at `path`; without `sites` its site records are not counted
    (the file is not read whole: what the symbols and libraries alone say). Raises
    OSError for a file that cannot be read and ValueError for one that is not an ELF64
    little-endian object."""
    c = Check(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        symbols = elf.ElfSymbols(fd)
        size = os.fstat(fd).st_size
        data = os.pread(fd, min(size, MAX_FILE), 0) if sites else b""
    finally:
        os.close(fd)
    names = symbols.dynamic_names(PREFIX)
    needed = symbols.dynamic_strings(elf.DT_NEEDED)
    c.sites = count_sites(data)
    c.needs_runtime = RUNTIME in needed
    c.static_runtime = bool(names.get(RUNTIME_SYMBOL))
    # the thread-local ones first: the loader resolves them first, and names one of them
    c.uses = sorted((n for n, defined in names.items() if not defined),
                    key=lambda n: (not n.startswith("pyref_tls_"), n))
    if c.needs_runtime:
        c.runtime_found = _resolve(RUNTIME, symbols.dynamic_strings(elf.DT_RUNPATH) +
                                   symbols.dynamic_strings(elf.DT_RPATH),
                                   os.path.dirname(os.path.abspath(path)))
    sites = "%d call site%s" % (c.sites, "" if c.sites == 1 else "s")
    if c.static_runtime and c.sites:
        c.traced = True
        c.reason = ("%s recorded; the runtime is linked in (--static-libs): this module has "
                    "a ring of its own" % sites)
    elif c.needs_runtime and (c.sites or c.uses):
        if c.runtime_found is None:
            c.reason = ("%s recorded, but %s is not found (its RUNPATH, LD_LIBRARY_PATH, the "
                        "system's directories): the import fails; build pyref (make) or link "
                        "with the --libs of the pyref-config that will be installed"
                        % (sites, RUNTIME))
        else:
            c.traced = True
            c.reason = "%s recorded into the ring of %s" % (sites, c.runtime_found)
    elif c.uses:
        c.reason = ("uses pyref's runtime but is not linked with it: the import fails with "
                    "\"undefined symbol: %s\" (or another of %s); add $(pyref-config --libs) "
                    "to the link line (after the objects, or in LDFLAGS)"
                    % (c.uses[0], ", ".join(c.uses[1:])))
    elif c.needs_runtime or c.static_runtime:
        c.reason = ("links pyref's runtime but nothing in it records: the compiler read the "
                    "interpreter's Python.h, not pyref's shim, so the ring stays empty; put "
                    "$(pyref-config --cflags) before every other -I (meson: "
                    "dependency('pyref') before the Python dependency; CFLAGS come after "
                    "Python's -I there)")
    else:
        c.reason = ("no trace of pyref: built without pyref-config's flags (--cflags when "
                    "compiling, --libs when linking)")
    return c


def main(argv) -> int:
    """`pyref-config --check EXT.so...`: one line per module; 0 when all are traced, 1 when
    one is not, 2 when one cannot be read."""
    if not argv:
        sys.stderr.write("pyref-config: --check needs an extension module (EXT.so)\n")
        return 2
    worst = 0
    for path in argv:
        try:
            c = check(path)
        except OSError as e:
            sys.stderr.write("pyref-config: %s: %s\n" % (path, e.strerror or e))
            worst = 2
            continue
        except (ValueError, IndexError) as e:
            sys.stderr.write("pyref-config: %s: not an ELF64 shared object (%s)\n"
                             % (path, e))
            worst = 2
            continue
        print(c.text())
        if not c.traced:
            worst = max(worst, 1)
    return worst
