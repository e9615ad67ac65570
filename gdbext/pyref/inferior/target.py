"""The one place where pyref touches the inferior: memory, mappings, symbols, DWARF layouts.

Everything else in pyref reads the target through this module, so the rules live here:

- Read only. No writes, no inferior function calls: every pyref command runs inside
  `command_scope()`, which turns `may-call-functions` off and restores the user's value.
- Read in bulk and parse with `struct`: one `read_memory` costs ~3 us, one gdb.Value field
  read 4-50 us, one `parse_and_eval` up to 170 us (measured with GDB 13). So a caller asks
  for the bytes it needs at once and never walks gdb.Values.
- Look things up once. Symbol addresses and struct layouts (from the DWARF of whatever
  objfile defines them) are cached per *objfile generation* and dropped when objfiles come
  or go. Decoded memory (`stop_cache()`) is cached per *stop epoch* and dropped whenever
  the inferior's memory may have changed: stop, continue, exit, `set var`, new objfiles.
  A core file never changes, so on a core the stop cache lives for the whole session.

Errors: `read` raises `MemoryReadError` (a pyref.errors.ReadError, so the gdb-free readers
take `read` as it is); a missing process raises `NoTargetError`. Both are `PyrefError`s,
whose text is one line for the user (the command framework adds the "pyref: " prefix and
turns it into a gdb.GdbError).

x86-64 and other 64-bit little-endian targets are what pyref is built and tested for.
"""
import contextlib
import os
import re
import struct
from collections import namedtuple

import gdb

from pyref.errors import NoDebugInfoError, NoTargetError, PyrefError, ReadError
from pyref.reader import corefile, elf
from pyref.reader import expr as expr_check


class MemoryReadError(ReadError):
    """`size` bytes at `addr` of the target are not readable through gdb (unmapped, or
    absent from the core)."""


# ---------------------------------------------------------------------------------------
# Caches and the events that invalidate them (registered once per gdb session)
# ---------------------------------------------------------------------------------------
_stop_cache = {}      # decoded memory; valid until the inferior may have changed
_objfile_cache = {}   # symbols and layouts; valid until objfiles change
_events_connected = False


def stop_cache():
    """A dict the caller may fill with anything derived from target memory (a decoded ring,
    type objects...). Emptied on stop, continue, exit, memory writes and objfile changes."""
    return _stop_cache


def objfiles():
    """The objfiles GDB has loaded (the program, its shared libraries), as gdb.Objfile."""
    return list(gdb.current_progspace().objfiles())


def objfile_cache():
    """A dict for anything derived from symbols or debug info. Emptied when objfiles change."""
    return _objfile_cache


def cached(key, factory):
    """The value cached under `key` for this objfile generation, made by `factory()` on
    first use: how symbols and DWARF layouts are looked up once (the kernel's CachedType
    idiom). A factory that raises caches nothing."""
    if key not in _objfile_cache:
        _objfile_cache[key] = factory()
    return _objfile_cache[key]


def _drop_memory(*_):
    _stop_cache.clear()


def _drop_all(*_):
    _stop_cache.clear()
    _objfile_cache.clear()


def connect_events():
    """Hook the cache invalidation to gdb's events. Idempotent: loading pyref twice
    connects each handler once."""
    global _events_connected
    if _events_connected:
        return
    ev = gdb.events
    for name in ("stop", "cont", "exited", "memory_changed", "inferior_call"):
        reg = getattr(ev, name, None)
        if reg is not None:
            reg.connect(_drop_memory)
    for name in ("new_objfile", "clear_objfiles", "free_objfile", "new_inferior"):
        reg = getattr(ev, name, None)
        if reg is not None:
            reg.connect(_drop_all)
    _events_connected = True


# ---------------------------------------------------------------------------------------
# The target itself
# ---------------------------------------------------------------------------------------
def target_kind():
    """'live' for a running/stopped process (native or remote), 'core' for a core file,
    None when there is neither."""
    inf = gdb.selected_inferior()
    conn = inf.connection
    if conn is None:
        return None
    if conn.type == "core":
        return "core"
    return "live" if inf.pid else None


def require_target():
    """Returns target_kind(); raises NoTargetError when there is no process or core."""
    kind = target_kind()
    if kind is None:
        raise NoTargetError()
    return kind


def pid():
    return gdb.selected_inferior().pid


@contextlib.contextmanager
def command_scope():
    """Wraps every pyref command: inferior function calls are refused for its duration
    (`set may-call-functions off`), and the user's setting is restored afterwards."""
    try:
        old = gdb.parameter("may-call-functions")
    except gdb.error:  # an older gdb without the setting
        old = None
    if old:
        gdb.execute("set may-call-functions off", to_string=True)
    try:
        yield
    finally:
        if old:
            gdb.execute("set may-call-functions on", to_string=True)


@contextlib.contextmanager
def preserved_selection():
    """Runs the block with the user's selected thread and frame restored afterwards, for
    walks that switch threads (the selection is gdb state, not the target's)."""
    keep_thread = gdb.selected_thread()
    try:
        keep_frame = gdb.selected_frame()
    except gdb.error:
        keep_frame = None
    try:
        yield
    finally:
        try:
            if keep_thread is not None and keep_thread.is_valid():
                keep_thread.switch()
            if keep_frame is not None and keep_frame.is_valid():
                keep_frame.select()
        except gdb.error:
            pass


# ---------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------
def read(addr, size):
    """`size` bytes at `addr` as bytes. Raises MemoryReadError if any of them is unreadable.
    Large reads should be split by the caller into 256 KiB-1 MiB chunks (reader/bulk.py)."""
    if size <= 0:
        return b""
    if addr < 0 or addr + size > 1 << 64:
        raise MemoryReadError(addr & ((1 << 64) - 1), size)
    try:
        return gdb.selected_inferior().read_memory(addr, size).tobytes()
    except (gdb.MemoryError, gdb.error, OverflowError, ValueError):
        raise MemoryReadError(addr, size) from None


def try_read(addr, size):
    """Like read(), but None instead of an exception."""
    try:
        return read(addr, size)
    except MemoryReadError:
        return None


_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")


def read_u64(addr):
    return _U64.unpack(read(addr, 8))[0]


def read_i64(addr):
    return _I64.unpack(read(addr, 8))[0]


def read_u32(addr):
    return _U32.unpack(read(addr, 4))[0]


def read_i32(addr):
    return _I32.unpack(read(addr, 4))[0]


read_ptr = read_u64


def read_ptrs(addr, count):
    """`count` consecutive pointers at `addr`, in one read."""
    if count <= 0:
        return ()
    return struct.unpack("<%dQ" % count, read(addr, 8 * count))


# ---------------------------------------------------------------------------------------
# Mappings
# ---------------------------------------------------------------------------------------
Mapping = namedtuple("Mapping", "start end perms offset path")
Mapping.__doc__ = """One region of the target's address space: [start, end), perms as in
/proc/PID/maps ('rw-p'), file offset, path ('' for anonymous memory)."""


def mappings():
    """The target's memory regions, sorted by address; cached per stop epoch.
    Live: /proc/PID/maps when gdb runs on the target's machine, else `info proc mappings`.
    Core: the parts of the core's PT_LOAD segments that the core holds (read by
    corefile.py, else from gdb's `maintenance info sections`), named after the NT_FILE
    note where it covers them."""
    cached = _stop_cache.get("target.mappings")
    if cached is not None:
        return cached
    kind = require_target()
    if kind == "core":
        maps = _core_mappings()
    else:
        maps = _live_mappings()
    maps.sort()
    _stop_cache["target.mappings"] = maps
    return maps


def _parse_proc_maps(text):
    maps = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5 or "-" not in parts[0]:
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        maps.append(Mapping(start, end, parts[1], int(parts[2], 16),
                            parts[5].strip() if len(parts) > 5 else ""))
    return maps


_INFO_PROC_LINE = re.compile(
    r"^\s*(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+0x[0-9a-f]+\s+(0x[0-9a-f]+)\s*(?:([rwxsp-]{4})\s+)?(.*)$")


def _parse_info_proc(text):
    maps = []
    for line in text.splitlines():
        m = _INFO_PROC_LINE.match(line)
        if m:
            maps.append(Mapping(int(m.group(1), 16), int(m.group(2), 16), m.group(4) or "r---",
                                int(m.group(3), 16), m.group(5).strip()))
    return maps


def _live_mappings():
    conn = gdb.selected_inferior().connection
    path = "/proc/%d/maps" % pid()
    if conn is not None and conn.type == "native" and os.path.exists(path):
        try:
            with open(path) as f:
                return _parse_proc_maps(f.read())
        except OSError:
            pass
    try:
        return _parse_info_proc(gdb.execute("info proc mappings", to_string=True))
    except gdb.error as e:
        raise PyrefError("cannot list the process's mappings: %s" % e) from None


_SECTION_LINE = re.compile(
    r"^\s*\[\s*\d+\]\s+(0x[0-9a-f]+)->(0x[0-9a-f]+)\s+at\s+(0x[0-9a-f]+):\s+(load\S*)\s+(.*)$")


def _core_mappings():
    maps = _core_mappings_from_file()
    if maps is None:
        maps = _core_mappings_from_gdb()
    # Name the regions that the NT_FILE note covers (file-backed mappings).
    try:
        files = _parse_info_proc(gdb.execute("info proc mappings", to_string=True))
    except gdb.error:
        files = []
    if files:
        named = []
        for m in maps:
            hit = next((f for f in files if f.start <= m.start < f.end), None)
            named.append(m._replace(path=hit.path, offset=hit.offset + m.start - hit.start)
                         if hit else m)
        maps = named
    return maps


def _core_mappings_from_file():
    """The core's PT_LOAD segments as corefile.py reads them (only the bytes the core
    holds), or None when the core file cannot be opened that way."""
    path = core_file_path()
    if not path:
        return None
    try:
        with corefile.Core(path) as core:
            maps = []
            for seg in core.segments:
                held = min(seg.filesz, max(0, core.size - seg.offset))
                if held > 0:
                    perms = "r" + "-w"[bool(seg.flags & elf.PF_W)] + \
                        "-x"[bool(seg.flags & elf.PF_X)] + "p"
                    maps.append(Mapping(seg.vaddr, seg.vaddr + held, perms, 0, ""))
            return maps
    except (OSError, ValueError, AttributeError):
        return None


def _core_mappings_from_gdb():
    text = gdb.execute("maintenance info sections", to_string=True)
    core_part = text.split("Core file:", 1)
    maps = []
    for line in (core_part[1] if len(core_part) == 2 else "").splitlines():
        m = _SECTION_LINE.match(line)
        if not m:
            continue
        flags = m.group(5).split()
        if "ALLOC" not in flags or "HAS_CONTENTS" not in flags:
            continue  # not in the core's bytes: gdb reads it from the file, if at all
        perms = "r" + ("-" if "READONLY" in flags else "w") + ("x" if "CODE" in flags else "-")
        maps.append(Mapping(int(m.group(1), 16), int(m.group(2), 16), perms + "p", 0, ""))
    return maps


def core_file_path():
    """The path of the core file gdb has open, or None."""
    try:
        text = gdb.execute("info target", to_string=True)
    except gdb.error:
        return None
    m = re.search(r"Local core dump file:\s*\n\s*`([^']+)'", text)
    return m.group(1) if m else None


def core_truncation():
    """One line when the target is a core file shorter than its program headers say
    (corefile.Core.truncation_text), else None. Checked once per objfile generation."""
    if target_kind() != "core":
        return None

    def check():
        path = core_file_path()
        if not path:
            return None
        try:
            with corefile.Core(path) as core:
                return core.truncation_text()
        except (OSError, ValueError, MemoryError):
            return None
    return cached(("target.core_truncation", core_file_path()), check)


# ---------------------------------------------------------------------------------------
# The executable: the one the target runs (or ran) against the one gdb loaded
# ---------------------------------------------------------------------------------------
class WrongExecutableError(PyrefError):
    """gdb's executable is not the program the process runs or the core was made by: its
    symbols and debug info describe another program, so nothing read through them holds."""


def executable():
    """The path of the executable gdb loaded (`file`), or None."""
    return gdb.current_progspace().filename


def check_executable():
    """Raises WrongExecutableError when gdb loaded another executable than the one the
    process runs (or the core was made by), else returns. Checked once per target and
    objfile generation. Silent when it cannot tell: no target, or the target's own
    executable is unknown."""
    kind = target_kind()
    key = ("target.wrong_executable", kind, pid())
    if key not in _objfile_cache:
        _objfile_cache[key] = _wrong_executable(kind)
    if _objfile_cache[key]:
        raise WrongExecutableError(_objfile_cache[key])


def _wrong_executable(kind):
    """The one-line complaint, or None when gdb's executable is the target's (or the
    question cannot be answered)."""
    if kind is None:
        return None
    core = core_file_path() if kind == "core" else None
    theirs = _target_executable(core)
    if theirs is None:
        return None
    path, their_id = theirs
    ours = executable()
    if kind == "core":
        what, fix = "this core was made by %s" % path, "run gdb %s %s" % (path, core)
    else:
        what, fix = "this process runs %s" % path, "run: file %s" % path
    if not ours:
        return "gdb has no executable: %s; %s" % (what, fix)
    our_id = next((o.build_id for o in gdb.current_progspace().objfiles()
                   if o.owner is None and o.filename and
                   os.path.realpath(o.filename) == os.path.realpath(ours)), None)
    if their_id and our_id:
        if their_id == our_id:
            return None
        if _same_file(path, ours):  # the file changed since (an upgrade, a rebuild)
            return ("%s with build-id %s, but the file there now has build-id %s; give gdb "
                    "the executable that made it" % (what, their_id, our_id))
    elif not os.path.exists(path) or _same_file(path, ours):
        return None  # without build-ids only a different file that exists here is sure
    return "%s but gdb loaded %s; %s" % (what, ours, fix)


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _target_executable(core_path):
    """(path, build-id or None) of the executable as the target itself records it (the
    core's NT_FILE note and memory, the process's /proc/PID/exe and memory), not as gdb
    was told; None when unknown."""
    if core_path is not None:
        try:
            with corefile.Core(core_path) as core:
                path = core.exe_path
                base = next((m.start for m in core.mappings
                             if m.path == path and m.offset == 0), None)
                if not path:
                    return None
                return path, elf.build_id(core.read, base) if base is not None else None
        except (OSError, ValueError, MemoryError):
            return None
    try:
        path = os.readlink("/proc/%d/exe" % pid())
    except OSError:  # not this machine's process (remote): gdb's word is all there is
        return None
    if path.endswith(" (deleted)"):
        path = path[:-len(" (deleted)")]
    try:
        base = next((m.start for m in mappings() if m.path == path and m.offset == 0), None)
    except PyrefError:
        base = None
    return path, elf.build_id(try_read, base) if base is not None else None


# ---------------------------------------------------------------------------------------
# Symbols
# ---------------------------------------------------------------------------------------
def symbol_address(name):
    """Address of the data or function symbol `name`, or None. Looks in the debug info
    (global, then file-static), then in the minimal (ELF) symbols; each name is looked up
    once per objfile generation."""
    key = ("sym", name)
    if key in _objfile_cache:
        return _objfile_cache[key]
    addr = None
    for lookup in (gdb.lookup_global_symbol, getattr(gdb, "lookup_static_symbol", None)):
        if lookup is None:
            continue
        try:
            sym = lookup(name)
            if sym is not None and (sym.is_variable or sym.is_function):
                a = sym.value().address
                if a is not None:
                    addr = int(a)
                    break
        except (gdb.error, RuntimeError):
            pass
    if addr is None:
        try:  # a minimal symbol (no debug info); `&'name'` does not call anything
            addr = int(gdb.parse_and_eval("&'%s'" % name))
        except (gdb.error, RuntimeError):
            addr = None
    _objfile_cache[key] = addr
    return addr


def symbol_addresses(name):
    """[(path, address)] of the data symbol `name` in every mapped ELF file that defines
    it (its .dynsym or .symtab), not only the one gdb's lookup finds first: a variable each
    statically linked extension has its own copy of. A core's files come from its NT_FILE
    note (corefile.Core.symbols), a live process's from its mappings. Cached per objfile
    generation."""
    def find():
        if target_kind() == "core":
            path = core_file_path()
            try:
                with corefile.Core(path) as core:
                    return core.symbols(name)
            except (OSError, ValueError, MemoryError, TypeError):
                return []
        out = []
        bases = {}
        try:
            maps = mappings()
        except PyrefError:
            return []
        for m in maps:
            if m.path.startswith("/") and m.offset == 0 and m.path not in bases:
                bases[m.path] = m.start
        for path, start in bases.items():
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                syms = elf.ElfSymbols(fd)
                value = syms.lookup(name)
                if value is not None and syms.min_vaddr is not None:
                    out.append((path, (start - (syms.min_vaddr & ~0xFFF) + value) &
                                _U64_MASK))
            except (OSError, ValueError, struct.error, OverflowError):
                pass
            finally:
                os.close(fd)
        return out
    return cached(("symbol_addresses", name), find)


def symbol_u64(name):
    """The 8-byte value stored at symbol `name` (e.g. a pointer variable), or None when the
    symbol is unknown or unreadable."""
    addr = symbol_address(name)
    if addr is None:
        return None
    try:
        return read_u64(addr)
    except MemoryReadError:
        return None


# ---------------------------------------------------------------------------------------
# Struct layouts from DWARF
# ---------------------------------------------------------------------------------------
Field = namedtuple("Field", "offset size bitpos bitsize elem_size")
Field.__doc__ = """One member of a struct, relative to the struct's start: byte offset,
size in bytes, absolute bit position and bit size (bitsize 0 unless a bitfield),
element size when the member is an array (else 0)."""


class StructLayout:
    """A C struct's layout read once from DWARF: `size` and a flat table of members by
    dotted path ('ob_base.ob_refcnt', 'long_value.lv_tag', 'state.kind'). Members of
    anonymous unions and structs appear under their parent's path, as C spells them."""

    __slots__ = ("name", "size", "fields")

    def __init__(self, name, size, fields):
        self.name, self.size, self.fields = name, size, fields

    def __contains__(self, path):
        return path in self.fields

    def field(self, path):
        try:
            return self.fields[path]
        except KeyError:
            raise NoDebugInfoError("the debug info of %s has no member %s"
                                   % (self.name, path)) from None

    def offset(self, path):
        return self.field(path).offset

    def find(self, *paths):
        """The first of `paths` that exists, as (path, Field); (None, None) if none."""
        for p in paths:
            f = self.fields.get(p)
            if f is not None:
                return p, f
        return None, None


def _flatten(gtype, prefix, base_bits, out, depth):
    for f in gtype.fields():
        if not hasattr(f, "bitpos"):  # a static member (C++)
            continue
        ftype = f.type.strip_typedefs()
        bits = base_bits + f.bitpos
        composite = ftype.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION)
        if not f.name:
            if composite and depth < 8:
                _flatten(ftype, prefix, bits, out, depth + 1)
            continue
        path = prefix + f.name
        elem = 0
        if ftype.code == gdb.TYPE_CODE_ARRAY:
            elem = ftype.target().strip_typedefs().sizeof
        out[path] = Field(bits // 8, ftype.sizeof, bits, f.bitsize, elem)
        if composite and depth < 8:
            _flatten(ftype, path + ".", bits, out, depth + 1)


def struct_layout(*names):
    """The StructLayout of the first of `names` (typedef or 'struct tag') whose complete
    definition is in the loaded debug info, or None. Cached per objfile generation."""
    key = ("layout",) + names
    if key in _objfile_cache:
        return _objfile_cache[key]
    layout = None
    for name in names:
        try:
            gtype = gdb.lookup_type(name).strip_typedefs()
        except gdb.error:
            continue
        if gtype.code not in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
            continue
        try:
            fields = gtype.fields()
        except TypeError:
            continue
        if not fields or not gtype.sizeof:  # only declared here (opaque)
            continue
        flat = {}
        _flatten(gtype, "", 0, flat, 0)
        layout = StructLayout(name, gtype.sizeof, flat)
        break
    _objfile_cache[key] = layout
    return layout


def enum_value(type_name, enumerator, default):
    """The value of `enumerator` in enum `type_name` from DWARF, else `default`."""
    key = ("enum", type_name, enumerator)
    if key not in _objfile_cache:
        value = default
        try:
            for f in gdb.lookup_type(type_name).strip_typedefs().fields():
                if f.name == enumerator:
                    value = f.enumval
                    break
        except (gdb.error, TypeError, AttributeError):
            pass
        _objfile_cache[key] = value
    return _objfile_cache[key]


# ---------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------
_U64_MASK = (1 << 64) - 1


def value_address(value):
    """The address a gdb.Value designates: a pointer or an integer (of any type) is the
    address itself, a struct, union or array lvalue (`_Py_NoneStruct`, `*op`) gives its own
    address. Raises PyrefError for anything else."""
    code = value.type.strip_typedefs().code
    if code in (gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_INT, gdb.TYPE_CODE_ENUM,
                gdb.TYPE_CODE_BOOL, gdb.TYPE_CODE_CHAR):
        return int(value) & _U64_MASK
    if code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION, gdb.TYPE_CODE_ARRAY) \
            and value.address is not None:
        return int(value.address)
    raise PyrefError("a %s is not an address" % value.type)


def eval_address(expr):
    """Evaluates the gdb expression `expr` once and returns it as an address (int), by
    value_address's rules. Raises PyrefError, and refuses an expression that would write
    the target (reader/expr.py)."""
    refused = expr_check.refuse_side_effects(expr)
    if refused:
        raise PyrefError(refused)
    try:
        value = gdb.parse_and_eval(expr)
        try:
            return value_address(value)
        except PyrefError:
            raise PyrefError("%s is a %s, not an address" % (expr, value.type)) from None
    except gdb.MemoryError as e:
        raise PyrefError("cannot evaluate %s: %s" % (expr, e)) from None
    except gdb.error as e:
        raise PyrefError(str(e)) from None
