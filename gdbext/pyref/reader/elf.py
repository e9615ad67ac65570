"""ELF64 little-endian, read by hand: the headers, program headers, notes, the GNU build-id,
symbol tables (.symtab, .dynsym) and the dynamic section (DT_NEEDED, DT_RUNPATH). Core
dumps (reader/corefile.py), the images mapped in a live target (the build-id check of
inferior/target.py) and extension modules on disk (reader/extcheck.py) are parsed with it.
Nothing in the input is trusted: counts and sizes are capped.
"""
from __future__ import annotations

import os
import struct

from pyref.errors import READ_ERRORS

# ---------------------------------------------------------------------------------------
# ELF constants and structs
# ---------------------------------------------------------------------------------------
ET_CORE = 4
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
PN_XNUM = 0xFFFF
SHT_SYMTAB, SHT_DYNAMIC, SHT_DYNSYM = 2, 6, 11
DT_NULL, DT_NEEDED, DT_RPATH, DT_RUNPATH = 0, 1, 15, 29
SHN_UNDEF = 0
STT_TLS = 6
NT_PRSTATUS, NT_PRPSINFO, NT_AUXV = 1, 3, 6
NT_FILE = 0x46494C45
AT_ENTRY, AT_EXECFN = 9, 31

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
PHDR = struct.Struct("<IIQQQQQQ")
SHDR = struct.Struct("<IIQQQQIIQQ")
SYM = struct.Struct("<IBBHQQ")

# Caps on what a file may ask of us.
MAX_PHNUM = 1 << 20
MAX_NOTES_BYTES = 64 << 20
MAX_NOTES = 1 << 17
MAX_FILES = 1 << 20
MAX_PATH = 4096
MAX_SHNUM = 1 << 16
MAX_SYMTAB_BYTES = 512 << 20
MAX_DYNAMIC_BYTES = 1 << 20
NT_GNU_BUILD_ID = 3


def cstr(b: bytes) -> str:
    z = b.find(b"\0")
    return (b if z < 0 else b[:z]).decode("utf-8", "replace")


def notes(data, limit=MAX_NOTES):
    """Yields (offset, name, type, desc offset, desc size) of the notes in `data` (a
    PT_NOTE segment's bytes), at most `limit`, stopping at the first that runs past the
    end."""
    pos, end, count = 0, len(data), 0
    while pos + 12 <= end and count < limit:
        count += 1
        namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
        desc = pos + 12 + (namesz + 3) // 4 * 4
        if desc + descsz > end:
            return
        yield pos, bytes(data[pos + 12:pos + 12 + namesz]).rstrip(b"\0"), ntype, desc, descsz
        pos = desc + (descsz + 3) // 4 * 4


def build_id(read, base):
    """The GNU build-id (hex) of the ELF image whose first page is at `base`, read through
    `read(addr, size)` (bytes, or None or one of READ_ERRORS when unreadable), or None."""
    try:
        ehdr = read(base, 64)
        if not ehdr or ehdr[:4] != b"\x7fELF":
            return None
        phoff, = struct.unpack_from("<Q", ehdr, 32)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
        phdrs = read(base + phoff, phentsize * min(phnum, 64)) if phentsize >= 56 else None
        for i in range(len(phdrs or b"") // max(phentsize, 1)):
            p_type, _flags, p_offset, _v, _p, p_filesz = struct.unpack_from(
                "<IIQQQQ", phdrs, i * phentsize)
            if p_type != PT_NOTE:
                continue
            data = read(base + p_offset, min(p_filesz, 4096)) or b""
            for _, name, ntype, desc, size in notes(data):
                if ntype == NT_GNU_BUILD_ID and name == b"GNU":
                    return bytes(data[desc:desc + size]).hex() or None
    except READ_ERRORS + (struct.error,):
        return None
    return None


class ElfSymbols:
    """The .symtab and .dynsym of one ELF64 little-endian file, kept raw; a lookup
    searches the string tables for the name first, then the st_name column for its
    offsets, so no table is ever turned into Python objects whole."""

    def __init__(self, fd):
        file_size = os.fstat(fd).st_size

        def pread(n, off):
            if n < 0 or off < 0 or off + n > file_size:
                raise ValueError("section or header past the end of the file")
            b = os.pread(fd, n, off)
            if len(b) != n:
                raise ValueError("file too short")
            return b

        (ident, _t, _m, _v, _e, phoff, shoff, _f, _eh, phentsize, phnum, shentsize, shnum,
         _shstrndx) = EHDR.unpack(pread(EHDR.size, 0))
        if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            raise ValueError("not ELF64 little-endian")
        self.min_vaddr = None
        phnum = min(phnum, 4096)
        if phentsize >= PHDR.size and phnum:
            ph = pread(phentsize * phnum, phoff)
            for i in range(phnum):
                p_type, _fl, _o, vaddr = PHDR.unpack_from(ph, i * phentsize)[:4]
                if p_type == PT_LOAD and (self.min_vaddr is None or vaddr < self.min_vaddr):
                    self.min_vaddr = vaddr
        if self.min_vaddr is None:
            raise ValueError("no PT_LOAD")
        self.tables = []         # (symbols, entsize, strings), .symtab before .dynsym
        self.dynsym = None       # the .dynsym's entry of `tables`
        self.dynamic = []        # (d_tag, d_val) of the dynamic section, up to DT_NULL
        self.dynstr = b""        # its string table
        if not shoff or shentsize < SHDR.size:
            return
        if shnum == 0:           # more than SHN_LORESERVE sections: count in section 0
            shnum = SHDR.unpack(pread(SHDR.size, shoff))[5]
        shnum = min(shnum, MAX_SHNUM)
        sh = pread(shentsize * shnum, shoff)
        headers = [SHDR.unpack_from(sh, i * shentsize) for i in range(shnum)]
        budget = MAX_SYMTAB_BYTES
        for want in (SHT_SYMTAB, SHT_DYNSYM):
            for (_n, sh_type, _fl, _a, off, size, link, _i, _al, entsize) in headers:
                if sh_type != want or link >= shnum or entsize < SYM.size or entsize % 4:
                    continue
                size = size // entsize * entsize
                str_off, str_size = headers[link][4], headers[link][5]
                if size + str_size > budget:
                    continue
                budget -= size + str_size
                self.tables.append((pread(size, off), entsize, pread(str_size, str_off)))
                if want == SHT_DYNSYM:
                    self.dynsym = self.tables[-1]
        for (_n, sh_type, _fl, _a, off, size, link, _i, _al, entsize) in headers:
            if sh_type != SHT_DYNAMIC or link >= shnum or entsize != 16:
                continue
            size = min(size, MAX_DYNAMIC_BYTES) // 16 * 16
            raw = pread(size, off)
            for i in range(0, size, 16):
                tag, val = struct.unpack_from("<qQ", raw, i)
                if tag == DT_NULL:
                    break
                self.dynamic.append((tag, val))
            self.dynstr = pread(min(headers[link][5], MAX_DYNAMIC_BYTES), headers[link][4])
            break

    def lookup(self, name: str):
        """st_value of the first defined, non-TLS symbol called `name`, or None."""
        key = name.encode("utf-8", "surrogateescape")
        for table, entsize, strtab in self.tables:
            # a symbol's name may be the tail of a longer string: every place name\0 ends
            offsets = set()
            i = strtab.find(key + b"\0")
            while i != -1:
                offsets.add(i)
                i = strtab.find(key + b"\0", i + 1)
            if not offsets:
                continue
            col = memoryview(table).cast("I")[0::entsize // 4].tolist()
            for k, st_name in enumerate(col):
                if st_name in offsets:
                    _n, info, _o, shndx, value, _s = SYM.unpack_from(table, k * entsize)
                    if shndx != SHN_UNDEF and info & 0xF != STT_TLS:
                        return value
        return None

    def dynamic_strings(self, tag):
        """The strings of the dynamic section's entries with `tag` (DT_NEEDED: the
        libraries the file needs; DT_RUNPATH, DT_RPATH: where it looks for them), in
        order."""
        return [cstr(self.dynstr[val:]) for t, val in self.dynamic
                if t == tag and val < len(self.dynstr)]

    def dynamic_names(self, prefix: str):
        """{name: defined} of the .dynsym symbols whose name starts with `prefix`: what the
        file exports (defined) and what it needs from other objects (undefined)."""
        if self.dynsym is None:
            return {}
        table, entsize, strtab = self.dynsym
        key = b"\0" + prefix.encode("utf-8", "surrogateescape")
        starts = set()
        i = strtab.find(key)
        while i != -1:
            starts.add(i + 1)
            i = strtab.find(key, i + 1)
        if strtab.startswith(key[1:]):
            starts.add(0)
        out = {}
        if not starts:
            return out
        col = memoryview(table).cast("I")[0::entsize // 4].tolist()
        for k, st_name in enumerate(col):
            if st_name in starts:
                shndx = SYM.unpack_from(table, k * entsize)[3]
                name = cstr(strtab[st_name:])
                out[name] = out.get(name, False) or shndx != SHN_UNDEF
        return out
