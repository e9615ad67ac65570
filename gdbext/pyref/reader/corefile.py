"""A gdb-free reader of Linux ELF64 little-endian core dumps (parsed with reader/elf.py),
enough to decode rings post mortem without GDB: memory reads, the mapped-file table, the
threads, and symbol lookup in the mapped ELF files. inferior/target.py reads a core's
segments and executable with it; the tests use it as the oracle that gdb's answers are
checked against (tests/pyreftest.py ring_from_core).

Memory comes from the core's PT_LOAD data where the core holds it. What the kernel did not
dump (file-backed read-only pages: an extension's .rodata with the strings of its call
sites) is read from the mapped file on disk, located through the NT_FILE note, provided
the file still matches the one that was mapped (its ELF header page is compared with the
copy in the core). Everything in the input is distrusted: counts, sizes and string lengths
are capped, and a core cut short (a full disk, a size limit) is detected: reads past its
end raise MemoryError saying so, and `Core.truncated` is true.
"""
from __future__ import annotations

import mmap
import os
import stat
import struct
from bisect import bisect_right
from dataclasses import dataclass

from pyref.reader import elf
from pyref.reader.elf import (AT_ENTRY, EHDR, ET_CORE, MAX_FILES, MAX_NOTES_BYTES, MAX_PATH,
                              MAX_PHNUM, NT_AUXV, NT_FILE, NT_PRPSINFO, NT_PRSTATUS, PF_W,
                              PHDR, PN_XNUM, PT_LOAD, PT_NOTE, SHDR, ElfSymbols, cstr)


class CoreError(ValueError):
    """The file is not an ELF64 little-endian core this reader understands."""


@dataclass(frozen=True)
class Segment:
    vaddr: int
    memsz: int
    filesz: int
    offset: int
    flags: int

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz

    @property
    def writable(self) -> bool:
        return bool(self.flags & PF_W)


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    offset: int          # bytes into the file
    path: str


# ---------------------------------------------------------------------------------------
# The core
# ---------------------------------------------------------------------------------------
class Core:
    """An open core file. `read(addr, size)` is a decode.py-style reader.

    Attributes: path, size (bytes of the core file), machine (e_machine), segments
    (PT_LOAD, by address), mappings (NT_FILE), pid and signal (of the first NT_PRSTATUS,
    the thread that crashed), tids (every NT_PRSTATUS), auxv ({type: value}), fname and
    psargs (NT_PRPSINFO), exe_path, truncated (the core is shorter than its program headers
    say) and warnings (one-line notes: stale mapped files and the like).

    `path_map` ({path in the core: local path}) redirects mapped files, e.g. for a core
    from another machine."""

    def __init__(self, path: str, path_map: dict | None = None):
        self.path = path
        self.path_map = dict(path_map or {})
        self.segments = []
        self.mappings = []
        self.page_size = 4096
        self.pid = None
        self.signal = None
        self.tids = []
        self.auxv = {}
        self.fname = self.psargs = None
        self.warnings = []
        self._files = {}         # local path -> fd or None
        self._fresh = {}         # core path -> True/False (file matches the mapped one)
        self._elf = {}           # core path -> parsed symbol info or None
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self.size = os.fstat(self._fd).st_size
            if self.size < EHDR.size:
                raise CoreError("%s: %d bytes, too short for an ELF header" % (path, self.size))
            self._map = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ)
            self._parse()
        except BaseException:
            self.close()
            raise
        self.truncated_at = self.size if self.truncated else None
        self._starts = [s.vaddr for s in self.segments]
        self._mstarts = [m.start for m in self.mappings]
        self.exe_path = self._find_exe()

    def truncation_text(self):
        """One line saying the core is cut short and by how much, or None."""
        if not self.truncated:
            return None
        return ("the core file is truncated: %d of the %d bytes its program headers "
                "describe (%.0f%%); memory past byte %d is missing" % (
                    self.size, self.expected_size, 100.0 * self.size /
                    max(1, self.expected_size), self.size))

    # --- lifetime ------------------------------------------------------------------------
    def close(self):
        m = getattr(self, "_map", None)
        if m is not None:
            m.close()
            self._map = None
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None
        for fd in getattr(self, "_files", {}).values():
            if fd is not None:
                os.close(fd)
        self._files = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- parsing -------------------------------------------------------------------------
    def _parse(self):
        m = self._map
        (ident, e_type, machine, _v, _entry, phoff, shoff, _flags, _ehsize, phentsize, phnum,
         shentsize, _shnum, _shstrndx) = EHDR.unpack_from(m, 0)
        if ident[:4] != b"\x7fELF":
            raise CoreError("%s: not an ELF file" % self.path)
        if ident[4] != 2 or ident[5] != 1:
            raise CoreError("%s: not ELF64 little-endian (class %d, data %d)"
                            % (self.path, ident[4], ident[5]))
        if e_type != ET_CORE:
            raise CoreError("%s: ELF type %d, not a core file" % (self.path, e_type))
        self.machine = machine
        if phnum == PN_XNUM:     # the real count is in section header 0's sh_info
            if shoff and shoff + SHDR.size <= self.size and shentsize >= SHDR.size:
                phnum = SHDR.unpack_from(m, shoff)[7]
        if phentsize < PHDR.size:
            raise CoreError("%s: program header entries of %d bytes" % (self.path, phentsize))
        phnum = min(phnum, MAX_PHNUM, max(0, self.size - phoff) // phentsize)
        self.truncated = False
        self.expected_size = self.size   # what the program headers say the file holds
        notes = []
        for i in range(phnum):
            (p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz,
             _align) = PHDR.unpack_from(m, phoff + i * phentsize)
            if p_type == PT_LOAD:
                if p_memsz == 0 or p_vaddr + p_memsz > 1 << 64:
                    continue
                self.segments.append(Segment(p_vaddr, p_memsz, min(p_filesz, p_memsz),
                                             p_offset, p_flags))
                if p_filesz:
                    self.expected_size = max(self.expected_size, p_offset + p_filesz)
                if p_filesz and p_offset + p_filesz > self.size:
                    self.truncated = True
            elif p_type == PT_NOTE:
                if p_offset + p_filesz > self.size:
                    self.truncated = True
                self.expected_size = max(self.expected_size, p_offset + p_filesz)
                notes.append((p_offset, p_filesz))
        self.segments.sort(key=lambda s: s.vaddr)
        budget = MAX_NOTES_BYTES
        for off, size in notes:
            size = max(0, min(size, self.size - off, budget))
            budget -= size
            self._parse_notes(off, size)

    def _parse_notes(self, off, size):
        data = self._map[off:off + size]
        for pos, name, ntype, desc, n in elf.notes(data):
            if name != b"CORE":
                continue
            try:
                self._note(ntype, data[desc:desc + n])
            except (struct.error, ValueError, IndexError):
                self.warnings.append("malformed note type %#x at %#x" % (ntype, off + pos))

    def _note(self, ntype, desc):
        if ntype == NT_PRSTATUS and len(desc) >= 36:
            cursig = struct.unpack_from("<H", desc, 12)[0]
            tid = struct.unpack_from("<I", desc, 32)[0]
            if self.pid is None:
                self.pid, self.signal = tid, cursig
            self.tids.append(tid)
        elif ntype == NT_PRPSINFO and len(desc) >= 136:
            self.fname = cstr(desc[40:56])
            self.psargs = cstr(desc[56:136])
        elif ntype == NT_AUXV:
            for k in range(0, len(desc) // 16 * 16, 16):
                a_type, a_val = struct.unpack_from("<QQ", desc, k)
                if a_type == 0:
                    break
                self.auxv[a_type] = a_val
        elif ntype == NT_FILE and len(desc) >= 16:
            count, page = struct.unpack_from("<QQ", desc, 0)
            if page and page & (page - 1) == 0:
                self.page_size = page
            count = min(count, MAX_FILES, (len(desc) - 16) // 24)
            names_off = 16 + 24 * count
            pos = names_off
            maps = []
            for i in range(count):
                start, end, pgoff = struct.unpack_from("<QQQ", desc, 16 + 24 * i)
                z = desc.find(b"\0", pos, min(len(desc), pos + MAX_PATH + 1))
                if z < 0:
                    break
                path = bytes(desc[pos:z]).decode("utf-8", "surrogateescape")
                pos = z + 1
                if end > start:
                    maps.append(Mapping(start, end, pgoff * self.page_size, path))
            self.mappings = sorted(maps, key=lambda x: x.start)

    def _find_exe(self):
        entry = self.auxv.get(AT_ENTRY)
        if entry is not None:
            m = self._mapping_at(entry)
            if m is not None:
                return m.path
        if self.mappings:
            return self.mappings[0].path
        return None

    # --- lookup --------------------------------------------------------------------------
    def _segment_at(self, addr):
        i = bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.segments[i].end:
            return self.segments[i]
        return None

    def _mapping_at(self, addr):
        i = bisect_right(self._mstarts, addr) - 1
        if i >= 0 and addr < self.mappings[i].end:
            return self.mappings[i]
        return None

    def local_path(self, path: str) -> str:
        return self.path_map.get(path, path)

    def _file_fd(self, path):
        """An open descriptor of a mapped file (regular files only), or None."""
        local = self.local_path(path)
        if local not in self._files:
            fd = None
            try:
                fd = os.open(local, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
                    fd = None
            except OSError:
                fd = None
            self._files[local] = fd
        return self._files[local]

    def _file_matches(self, path):
        """Whether the file on disk is the one that was mapped: the first page of its
        offset-0 mapping, when the core holds it (the kernel dumps ELF header pages),
        must equal the file's first page."""
        if path in self._fresh:
            return self._fresh[path]
        ok = self._file_fd(path) is not None
        if ok:
            for mp in self.mappings:
                if mp.path != path or mp.offset != 0:
                    continue
                seg = self._segment_at(mp.start)
                if seg is None or seg.filesz == 0:
                    continue
                n = min(self.page_size, seg.vaddr + seg.filesz - mp.start,
                        max(0, self.size - (seg.offset + mp.start - seg.vaddr)))
                if n <= 0:
                    continue
                off = seg.offset + mp.start - seg.vaddr
                mine = bytes(self._map[off:off + n])
                try:
                    theirs = os.pread(self._file_fd(path), n, 0)
                except OSError:
                    theirs = None
                if mine != theirs:
                    ok = False
                    self.warnings.append("%s differs from the file that was mapped (rebuilt "
                                         "since the crash?): not used" % self.local_path(path))
                break
        self._fresh[path] = ok
        return ok

    def _from_file(self, mp, addr, n):
        """Up to n bytes at addr from the mapped file, or raises MemoryError."""
        fd = self._file_fd(mp.path)
        if fd is None:
            raise MemoryError("%#x is not in the core and %s (mapped there) cannot be "
                              "opened" % (addr, self.local_path(mp.path)))
        if not self._file_matches(mp.path):
            raise MemoryError("%#x is not in the core and %s differs from the mapped file"
                              % (addr, self.local_path(mp.path)))
        n = min(n, mp.end - addr, 1 << 30)
        try:
            got = os.pread(fd, n, mp.offset + addr - mp.start)
        except (OSError, OverflowError) as e:
            raise MemoryError("%#x is not in the core and reading it from %s failed: %s"
                              % (addr, self.local_path(mp.path), e)) from None
        if not got:
            raise MemoryError("%#x is not in the core and lies past the end of %s"
                              % (addr, self.local_path(mp.path)))
        return got

    # --- reading -------------------------------------------------------------------------
    def read(self, addr: int, size: int) -> bytes:
        """`size` bytes at `addr`; MemoryError (with the reason) if any of them cannot be
        had: not mapped, not dumped and not file-backed, or past a truncated core's end."""
        if size < 0 or addr < 0:
            raise ValueError("bad read: %#x, %d bytes" % (addr, size))
        if self._map is None:
            raise ValueError("core %s is closed" % self.path)
        if addr + size > 1 << 64:
            raise MemoryError("%#x + %d is beyond the address space" % (addr, size))
        parts = []
        cur, left = addr, size
        while left > 0:
            got = self._read_some(cur, left)
            parts.append(got)
            cur += len(got)
            left -= len(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_some(self, addr, n):
        """A nonempty prefix of the n bytes at addr, or MemoryError."""
        seg = self._segment_at(addr)
        mp = self._mapping_at(addr)
        if seg is None:
            if mp is not None:
                return self._from_file(mp, addr, n)
            raise MemoryError("cannot access memory at %#x: not mapped in the core" % addr)
        rel = addr - seg.vaddr
        n = min(n, seg.end - addr)
        if rel < seg.filesz:
            off = seg.offset + rel
            m = min(n, seg.filesz - rel)
            if off + m <= self.size:
                return self._map[off:off + m]
            if off < self.size:
                return self._map[off:self.size]
            # dumped, but the core was cut before these bytes
            if mp is not None and not seg.writable:
                return self._from_file(mp, addr, m)
            raise MemoryError("cannot access memory at %#x: core truncated at byte %d "
                              "(this segment's data would be at %d..%d)"
                              % (addr, self.size, seg.offset, seg.offset + seg.filesz))
        if mp is not None:
            return self._from_file(mp, addr, n)
        raise MemoryError("cannot access memory at %#x: not dumped in the core (an anonymous "
                          "mapping the core filter left out)" % addr)

    def regions(self, writable: bool = True) -> list:
        """[(start, end)] of memory the core holds (clipped at a truncated core's end),
        writable segments only unless writable=False. For scan_for_headers."""
        out = []
        for s in self.segments:
            if writable and not s.writable:
                continue
            n = min(s.filesz, max(0, self.size - s.offset))
            if n > 0:
                out.append((s.vaddr, s.vaddr + n))
        return out

    # --- symbols -------------------------------------------------------------------------
    def _elf_info(self, path):
        """(load bias, ElfSymbols) of one mapped file, or None; parsed once."""
        if path in self._elf:
            return self._elf[path]
        info = None
        fd = self._file_fd(path)
        if fd is not None and self._file_matches(path):
            try:
                info = ElfSymbols(fd)
            except (OSError, ValueError, struct.error, OverflowError) as e:
                self.warnings.append("%s: cannot read its symbols: %s"
                                     % (self.local_path(path), e))
        if info is not None:
            start = None
            for mp in self.mappings:
                if mp.path == path and mp.offset == 0:
                    start = mp.start
                    break
            if start is None:
                info = None
            else:
                info = (start - (info.min_vaddr & ~(self.page_size - 1)), info)
        self._elf[path] = info
        return info

    def symbols(self, name: str) -> list:
        """[(path, address)] of every mapped ELF file that defines `name` (.dynsym or
        .symtab), in address order of the files' mappings."""
        out = []
        seen = set()
        for mp in self.mappings:
            if mp.path in seen:
                continue
            seen.add(mp.path)
            info = self._elf_info(mp.path)
            value = info[1].lookup(name) if info is not None else None
            if value is not None:
                out.append((mp.path, (info[0] + value) & 0xFFFFFFFFFFFFFFFF))
        return out

    def symbol(self, name: str):
        """The address of `name` in the first mapped file defining it, or None."""
        hits = self.symbols(name)
        return hits[0][1] if hits else None
