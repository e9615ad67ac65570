"""The owners search of `pyref owners` and `pyref leaks`: a conservative scan (reader/scan.py)
of every aligned word of the process's readable, writable memory — heap, anonymous
mappings, libraries' data and bss, thread stacks; live or in a core — equal to a searched
address, then each word attributed:

- thread stacks, interpreter frames, interpreter and thread states, C globals: the owner
  sources of inferior/ownersources.py;
- the heap: the object slot around the word (inferior/heapslots.py). A word in a bare
  buffer — a list's item array, a dict's key table or values array, a set's table, a
  3.11/3.12 instance's values array — is resolved by a second pass that looks for the
  pointer to the buffer's start and names the owner from it: list item [i], dict value for
  key 'k', instance attribute 'name'. A third pass asks who owns each dict found, so that
  an instance's __dict__, a module's globals and a type's namespace read as what they are.

The pyref ring is not scanned: its records are history, not owners. Everything is bounded
(hits per needle, words attributed, symbol lookups) and says so when a bound was hit.
Memory is read through target.read in 1 MiB chunks.
"""
import time

import gdb

from pyref.errors import NoDebugInfoError, PyrefError
from pyref.inferior import cframes, objects, ownersources, rings, target
from pyref.inferior.heapslots import (attr_name, entry_key, heap, key_text, locate,
                                      obj_label, short, slot)
from pyref.inferior.layout import TPFLAGS_MANAGED_DICT
from pyref.inferior.target import MemoryReadError
from pyref.reader import scan
from pyref.rules import events, leaks, ownergraph
from pyref.rules.ownergraph import Owner, stale_owner

MAX_HITS = 2000            # words kept per searched address
MAX_ATTRIBUTED = 500       # hits attributed in detail per address (the rest are counted)
PROGRESS_BYTES = 256 << 20  # scans bigger than this print progress


class _Pending:
    """A hit inside a bare buffer (no object header): who points to the buffer decides."""

    __slots__ = ("hit", "block", "start", "needles")

    def __init__(self, hit, block, start, needles):
        self.hit, self.block, self.start, self.needles = hit, block, start, needles


# ---------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------
class Memory:
    """The regions to scan and how to tell them apart; built once per command."""

    def __init__(self, problems, command="pyref owners"):
        self.problems = problems
        self.command = command          # names the command in progress lines
        maps = target.mappings()
        self.maps = scan.RangeIndex((m.start, m.end, m) for m in maps)
        self.threads = cframes.threads(problems)
        for t in self.threads:       # cached per stop: a later walk tells this command
            t.problems = problems
        self.stacks = scan.RangeIndex((t.region[0], t.region[1], t) for t in self.threads
                                      if t.region)
        self.by_lwp = {t.lwp: t.label for t in self.threads}
        self.states = ownersources.state_ranges(self.by_lwp)
        try:
            self.pyframes = ownersources.pyframe_ranges(self.by_lwp)
        except (MemoryReadError, NoDebugInfoError) as e:
            problems.append("interpreter frames not read: %s" % e)
            self.pyframes = scan.RangeIndex()
        self.ring_ranges, self.ring_records = self._rings()
        readable = [(m.start, m.end) for m in maps if "r" in m.perms and "w" in m.perms
                    and not m.path.startswith(("[vvar", "[vsyscall", "[vdso"))]
        regions = scan.subtract(readable, self.ring_ranges)
        # The heap and anonymous memory first: Python's objects live there, so a pass
        # that stops once it has its answers (buffer and dict owners) stops sooner.
        self.regions = sorted(regions, key=lambda r: (self._rank_of(r[0]), r[0]))
        self.total = sum(e - s for s, e in self.regions)
        # Where an owner object can be (the passes for a buffer's or a dict's owner): not
        # the threads' stacks, a word on which is no object's field (_buffer_owner drops
        # it, _dict_owner finds no object there), and which are most of a many-threaded
        # process's writable memory (64 threads: 520 of 602 MiB).
        self.object_regions = sorted(
            scan.subtract(regions, [t.region for t in self.threads if t.region]),
            key=lambda r: (self._rank_of(r[0]), r[0]))
        self.symbol_budget = [ownersources.MAX_SYMBOL_LOOKUPS]
        self.passes = []

    def _rank_of(self, addr):
        m = self.region(addr)
        return 0 if m is None or not m.path or m.path == "[heap]" else 1

    def _rings(self):
        try:
            ringset = rings.ring_set(required=False)
        except PyrefError:
            return [], None
        out = []
        for ring in ringset.rings:
            h = ring.header
            out.append((ring.addr, ring.addr + max(h.header_size, 4096)))
            for t in ring.threads:
                if t.ring:
                    out.append((t.ring, t.ring + h.capacity * h.record_size))
        return out, ringset

    def search(self, needles, what, on_hits=None, regions=None):
        """One scan pass over `regions` (default: all, self.regions): {needle: [word
        address]}; `on_hits` as scan.scan takes it."""
        progress = None
        if self.total > PROGRESS_BYTES:
            state = {"t": time.perf_counter(), "shown": False}

            # A line a second, and the last if any was shown; on gdb's stderr, so that
            # what a command prints on stdout (--json) stays one parseable document.
            def progress(done, total):
                now = time.perf_counter()
                if now - state["t"] >= 1.0 or (done == total and state["shown"]):
                    state["t"], state["shown"] = now, True
                    gdb.write("%s: %s: %d of %d MiB scanned\n" %
                              (self.command, what, done >> 20, total >> 20), gdb.STDERR)
                    gdb.flush(gdb.STDERR)
        res = scan.scan(target.read, self.regions if regions is None else regions,
                        needles, limit=MAX_HITS,
                        progress=progress, on_hits=on_hits)
        self.passes.append(res)
        if res.cut:
            self.problems.append("%s: more than %d words hold %s; the rest are not shown"
                                 % (what, MAX_HITS, ", ".join("0x%x" % n for n in
                                                              sorted(res.cut))))
        return res.hits

    def region(self, addr):
        got = self.maps.find(addr)
        return got[2] if got else None

    def after_file(self, m):
        """Whether anonymous mapping `m` directly follows a file's mapping: a library's or
        the executable's .bss (or, in a core, the heap right after the executable's)."""
        if m is None or m.path:
            return False
        prev = self.maps.find(m.start - 1)
        return prev is not None and bool(prev[2].path) and not prev[2].path.startswith("[")


def _attribute(mem, hit):
    """Owner or _Pending for one word holding a searched address."""
    lay = heap()
    st = mem.stacks.find(hit)
    if st is not None:
        return ownersources.stack_owner(st[2], hit)
    pf = mem.pyframes.find(hit)
    if pf is not None:
        return ownersources.pyframe_owner(hit, pf[2])
    cs = mem.states.find(hit)
    if cs is not None:
        return ownersources.state_owner(hit, cs)
    m = mem.region(hit)
    path = m.path if m is not None else ""
    if (path and not path.startswith("[")) or mem.after_file(m):  # data or bss: C globals
        sym = ownersources.symbol(hit, mem.symbol_budget)
        if sym is not None:
            return ownersources.static_owner(hit, sym)
    what, got = locate(lay, hit, (m.start, m.end) if m is not None else None)
    if what == "object":
        return slot(got, hit)
    if what == "freed":
        return stale_owner(hit, "heap", "heap word " + got[0], got[1])
    if what == "block":
        blk, start = got
        return _Pending(hit, blk, start, _block_needles(lay, start, hit))
    if path != "[heap]":
        sym = ownersources.symbol(hit, mem.symbol_budget)
        if sym is not None:
            return ownersources.static_owner(hit, sym)
    return Owner(hit, "heap", "heap word in %s, no allocator block or object found around "
                 "it (owner unknown)" % (path or "anonymous memory"), root=True,
                 label="heap 0x%x" % hit, edge="heap")


def _block_needles(lay, start, hit):
    """{needle: (kind, base)}: values a pointer to the buffer holding `hit` may have.
    'start' the buffer start (list items, dict keys, set table, 3.10/3.13 values); 'values'
    a 3.11/3.12 values array (after its prefix bytes) and 'values-1' its 3.12 tagged
    form in an instance's pre-header."""
    out = {start: ("start", start)}
    if lay.list_array:
        out[start + lay.list_array] = ("list", start + lay.list_array)
    if lay.values_prefix:
        for p in scan.values_prefixes(target.read, start, hit - start):
            v = start + p
            out[v] = ("values", v)
            if lay.tagged_values:
                out[v - 1] = ("values", v)
    return out


def _resolve_pending(mem, pending):
    """Owners for buffers: a second pass for the pointers to their starts. A buffer has
    one owning object (a list's ob_item, a dict's ma_keys...): once it is found, its
    needles are dropped, and the pass ends when every buffer has its owner."""
    lay = heap()
    needles = {}
    for p in pending:
        for n in p.needles:
            needles.setdefault(n, []).append(p)
    best, done = {}, set()

    def on_hits(found):
        for n, wheres in found.items():
            for p in needles.get(n, ()):
                if p.hit in done:
                    continue
                kind, base = p.needles[n]
                for where in wheres:
                    try:
                        o = _buffer_owner(mem, lay, p, kind, base, n, where)
                    except (MemoryReadError, NoDebugInfoError):
                        o = None
                    if o is None:
                        continue
                    if p.hit not in best or _rank(o) > _rank(best[p.hit]):
                        best[p.hit] = o
                    if o.kind == "object" and o.holder is not None and o.detail is None:
                        done.add(p.hit)  # a list, dict, set or instance: the owner
                        break
        return {n for n, ps in needles.items() if all(p.hit in done for p in ps)}

    if needles:
        mem.search(list(needles), "buffer owners", on_hits, mem.object_regions)
    out = {}
    for p in pending:
        o = best.get(p.hit)
        if o is None:
            o = Owner(p.hit, "heap", "heap buffer 0x%x+%d (%s block), no pointer to it "
                      "found (owner unknown)" % (p.start, p.hit - p.start,
                                                 p.block.allocator),
                      root=True, label="buffer 0x%x" % p.start, edge="+%d" %
                      (p.hit - p.start))
        out[p.hit] = o
    return out


def _rank(o):
    # The object whose known field points to the buffer decides, even when it says the
    # word is stale (past a list's end, in a byte buffer): any other pointer to the
    # buffer's start is only a possible owner.
    return (o.kind == "object" and o.detail is None, o.stale is None, o.kind == "object")


def _buffer_owner(mem, lay, p, kind, base, needle, where):
    """The Owner of p.hit given a word at `where` holding `needle`, a pointer to the
    buffer, or None when that word says nothing useful."""
    m = mem.region(where)
    what, info = locate(lay, where, (m.start, m.end) if m is not None else None)
    i = (p.hit - base) // 8
    if what != "object":
        if mem.stacks.find(where) or mem.pyframes.find(where) or what == "freed":
            return None
        return Owner(p.hit, "heap", "heap buffer 0x%x+%d, pointed to from 0x%x" % (
            p.start, p.hit - p.start, where), root=True, label="buffer 0x%x" % p.start,
            edge="+%d" % (p.hit - p.start), detail="possible")
    off = where - info.addr
    label = obj_label(info)

    def owner(edge, text, stale=None):
        return Owner(p.hit, "object", "%s %s" % (label, text), holder=info.addr, label=label,
                     edge=edge, stale=stale)

    if info.kind == "list" and off == lay.list_items and needle == base and \
            kind in ("start", "list"):
        n = info.body.i64(lay.ob_size)
        if i >= n:
            return owner("[%d]" % i, "item [%d], past its end (size %d)" % (i, n),
                         stale="a slot past the list's end (size %d)" % n)
        return owner("[%d]" % i, "item [%d]" % i)
    if info.kind == "dict" and off == lay.ma_keys and needle == p.start:
        return _dict_keys_owner(info, p, owner)
    if info.kind == "dict" and off == lay.ma_values:
        return _dict_values_owner(info, p, owner, needle)
    if info.kind in ("set", "frozenset") and off == lay.set_table and needle == p.start:
        return owner("{element}", "element")
    if kind == "values" and off in (-24, -32):  # a 3.11/3.12 instance's values array
        # The prefix ends with its own size, the number of attributes set, then their
        # indexes (new_values(), _PyDictValues_AddToInsertionOrder()): any other slot is
        # NULL or the allocator block's leftover tail, not an attribute.
        try:
            prefix = target.read(p.start, base - p.start)
        except MemoryReadError:
            prefix = None
        if prefix is not None and len(prefix) >= 2:
            used = {prefix[-3 - k] for k in range(min(prefix[-2], len(prefix) - 2))}
            if i not in used:
                return owner(".?%d" % i, "values array slot #%d, set by no attribute" % i,
                             stale="a values array slot no attribute uses")
        name = attr_name(info.type_addr, i)
        return owner("." + (name or "?%d" % i), "attribute %s" % (
            "'%s'" % name if name else "#%d (values array)" % i))
    if _byte_buffer(info, off):
        return owner("+%d" % (p.hit - p.start), "byte buffer 0x%x+%d (data, not references)"
                     % (p.start, p.hit - p.start), stale="a byte buffer's leftover data (a "
                     "reused block is not cleared)")
    # Some other object's field points at the buffer: an owner, but not one of the known
    # shapes, so the search goes on for a better one (detail 'field').
    inner = slot(info, where)
    return Owner(p.hit, "object", "buffer 0x%x+%d of %s" % (p.start, p.hit - p.start,
                                                           inner.text),
                 holder=info.addr, label=label, edge="%s+%d" % (inner.edge,
                                                                p.hit - p.start),
                 detail="field")


# CPython objects whose heap buffer holds bytes, never object pointers: type name ->
# (the C struct, from DWARF, and its member pointing to the buffer). A pointer-shaped word
# there is leftover data: 3.14's 128 KiB I/O buffers, never fully written, often hold one.
_BYTE_BUFFERS = {"bytearray": ("PyByteArrayObject", "ob_bytes"),
                 "_io.BufferedReader": ("buffered", "buffer"),
                 "_io.BufferedWriter": ("buffered", "buffer"),
                 "_io.BufferedRandom": ("buffered", "buffer"),
                 "array.array": ("arrayobject", "ob_item")}


def _byte_buffer(info, off):
    """True when the field at `off` of the object `info` is one of _BYTE_BUFFERS (the
    struct's DWARF says where; without it, nothing is assumed)."""
    spec = _BYTE_BUFFERS.get(info.type.name)
    if spec is None:
        return False
    s = target.struct_layout(spec[0], "struct " + spec[0])
    return s is not None and spec[1] in s and s.offset(spec[1]) == off


def _dict_keys_owner(info, p, owner):
    try:
        entries, esz, koff, voff, n = objects.keys_table(p.start)
    except (MemoryReadError, NoDebugInfoError):
        return owner("?", "key table")
    if p.hit < entries:
        return owner("?", "key table header/indices")
    j, within = divmod(p.hit - entries, esz)
    if j >= n:
        return owner("?", "key table entry %d, past the used entries" % j,
                     stale="a dict entry past the used ones")
    try:
        key = target.read_u64(entries + j * esz + koff)
        value = target.read_u64(entries + j * esz + voff)
    except MemoryReadError:
        key = value = 0
    if within == koff:
        if not value:
            return owner("{key}", "key of a deleted entry", stale="a deleted dict entry")
        return owner("{key}", "key (value %s)" % short(value, 40))
    if within == voff:
        kt = key_text(key)
        if kt is None:
            return owner("[?]", "value of a deleted entry", stale="a deleted dict entry")
        return owner("[%s]" % kt, "value for key %s" % kt)
    return owner("?", "key table entry %d +%d" % (j, within))


def _dict_values_owner(info, p, owner, needle):
    lay = heap()
    base = needle
    if lay.dictvalues is not None and "capacity" in lay.dictvalues:  # 3.13: header first
        base = needle + lay.dictvalues.offset("values")
    if lay.tagged_values and needle & 1:
        base = needle + 1
    i = (p.hit - base) // 8
    keys = info.body.u64(lay.ma_keys)
    kt = key_text(entry_key(keys, i))
    return owner("[%s]" % (kt or "?"), "value for key %s" % (kt or "#%d" % i))


# ---------------------------------------------------------------------------------------
# Promotion: a dict's own owner
# ---------------------------------------------------------------------------------------
# -- promotion: a dict's own owner ---------------------------------------------------------
def _promote(mem, owners):
    """Rewrites owners that are a dict's slot into the slot of what owns the dict: a
    module's global, a type's attribute, an instance's attribute. One more pass."""
    lay = heap()
    dicts = {}
    for o in owners:
        if o.kind == "object" and o.holder is not None and o.stale is None and \
                o.label.startswith("dict "):
            dicts.setdefault(o.holder, []).append(o)
    if not dicts:
        return
    found_owner = {}

    def on_hits(found):
        for d, wheres in found.items():
            for where in wheres:
                got = _dict_owner(mem, lay, where)
                if got is not None and (d not in found_owner or
                                        got[0] > found_owner[d][0]):
                    found_owner[d] = got
        return set(found_owner)  # a dict belongs to one module, type or instance

    mem.search(list(dicts), "dict owners", on_hits, mem.object_regions)
    for d, os_ in dicts.items():
        best = found_owner.get(d)
        if best is None:
            continue
        rank, info = best
        try:
            label = obj_label(info)
        except (MemoryReadError, NoDebugInfoError):
            label = "%s object 0x%x" % (info.type.name, info.addr)
        for o in os_:
            key = o.edge[1:-1] if o.edge.startswith("[") else o.edge
            if rank == 3:
                name = key.strip("'")
                o.text = "%s global %s (in its __dict__ 0x%x)" % (label, key, d)
                o.edge, o.root = name, True
            else:
                o.text = "%s attribute %s (in its __dict__ 0x%x)" % (label, key, d)
                o.edge = "." + key.strip("'")
            o.holder, o.label = info.addr, label


def _dict_owner(mem, lay, where):
    """(rank, info) when the word at `where` is the dict slot of a module (3), a type (2)
    or an instance (1), else None."""
    m = mem.region(where)
    try:
        what, info = locate(lay, where, (m.start, m.end) if m is not None else None)
    except (MemoryReadError, NoDebugInfoError):
        return None
    if what != "object":
        return None
    off = where - info.addr
    if info.kind == "module" and off == lay.md_dict:
        return 3, info
    if info.kind == "type" and off == lay.tp_dict:
        return 2, info
    if off == -8 - lay.gc_size and lay.interpreter_frames and \
            info.type.flags & TPFLAGS_MANAGED_DICT:
        return 1, info
    if not lay.interpreter_frames or not info.type.flags & TPFLAGS_MANAGED_DICT:
        try:
            dictoff = target.read_i64(info.type_addr + lay.tp_dictoffset)
        except MemoryReadError:
            dictoff = 0
        if dictoff > 0 and off == dictoff:
            return 1, info
    return None


# ---------------------------------------------------------------------------------------
# Owners of a set of addresses
# ---------------------------------------------------------------------------------------
def owners_of(mem, targets):
    """{target: [Owner]} for each address in `targets`, sorted by word address."""
    hits = mem.search(targets, "pass 1")
    result = {}
    pending = []
    for t in targets:
        lst = result[t] = []
        words = hits.get(t, [])
        for i, h in enumerate(words):
            if i >= MAX_ATTRIBUTED:
                lst.append(Owner(h, "heap", "not attributed (more than %d words)" %
                                 MAX_ATTRIBUTED, counted=False, detail="possible"))
                continue
            try:
                o = _attribute(mem, h)
            except (MemoryReadError, NoDebugInfoError) as e:
                o = Owner(h, "heap", "cannot attribute: %s" % e, counted=False,
                          detail="possible")
            if isinstance(o, _Pending):
                pending.append((t, o))
            else:
                lst.append(o)
    if pending:
        resolved = _resolve_pending(mem, [p for _, p in pending])
        for t, p in pending:
            result[t].append(resolved[p.hit])
    _promote(mem, [o for lst in result.values() for o in lst])
    for t, tagged in ownersources.tagged_frame_refs(mem.pyframes, targets).items():
        result[t].extend(tagged)
    for t in targets:
        result[t].sort(key=lambda o: o.addr)
    return result


def register_hits(mem, addr):
    """['rbx of thread 1 (LWP n)'] for innermost registers equal to `addr`."""
    out = []
    for t in mem.threads:
        for name, value in t.registers.items():
            if value == addr:
                out.append("%s of %s" % (name, t.label))
    return out


# ---------------------------------------------------------------------------------------
# The report of pyref owners
# ---------------------------------------------------------------------------------------
def ring_holders(ringset, addr):
    """[(file, line, func, api, count)]: C sites that acquired references to `addr` in
    its current lifetime and did not release them, from the ring."""
    if ringset is None or not ringset.rings:
        return []
    groups = {}
    evs = events.from_records(ringset.records_for(addr), rings.site_of)
    for e in leaks.unreleased(evs):
        key = (e.file, e.line, e.func, e.api)
        groups[key] = groups.get(key, 0) + 1
    return [k + (n,) for k, n in sorted(groups.items(), key=lambda kv: -kv[1])]


def _target_label(info):
    if info.state == objects.LIVE:
        return "%s\\n%s" % (obj_label(info), short(info.addr, 40))
    return "0x%x (%s)" % (info.addr, info.state)


def build_report(addr, depth=1):
    """The ownergraph.Report of `pyref owners` for the object at `addr`, following owners
    `depth` levels up."""
    target.require_target()
    rep = ownergraph.Report(addr)
    try:
        rep.info = objects.inspect(addr)
    except MemoryReadError:
        raise PyrefError("cannot read memory at 0x%x: no object there" % addr) from None
    heap()
    mem = rep.mem = Memory(rep.problems)
    rep.graph_nodes[addr] = _target_label(rep.info)
    rep.short = short(addr, 60) if rep.info.state == objects.LIVE else ""
    ownergraph.follow(rep, lambda addrs: owners_of(mem, addrs), depth)
    rep.registers = register_hits(mem, addr)
    ringset = rep.ringset = mem.ring_records
    if ringset is not None and ringset.rings:
        rep.ring_records = len(ringset.records_for(addr))
        rep.holders = ring_holders(ringset, addr)
        rep.kept = ownergraph.kept_pointers(events.from_records(ringset.records_for(addr),
                                                                rings.site_of))
        rep.coverage = leaks.ring_coverage(ringset.rings)
        rep.ring_incomplete = ringset.caveats.for_object(addr)
    return rep
