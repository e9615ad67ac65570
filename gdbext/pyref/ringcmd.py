"""The ring as GDB sees it: finding it in the target, decoding it once per stop, and the
`pyref ring` and `pyref history` commands.

Finding: the `pyref_ring` pointer (libpyref exports it in .dynsym, so this works on a
stripped extension too); failing that, a scan of the writable mappings for the header's
magic (decode.scan_for_headers). Decoding: one bulk read per thread ring through
target.read, parsed by the gdb-free decode module, then an index by object address. Both
are kept in target.stop_cache(), so a second query at the same stop costs a dict lookup;
the cache is dropped when the inferior runs or objfiles change.
"""
import json

from pyref import decode, target
from pyref.rules import capi, events
from pyref.target import PyrefError


# ---------------------------------------------------------------------------------------
# Locating and decoding (cached per stop)
# ---------------------------------------------------------------------------------------
def _read(addr, size):
    """target.read with the exception the gdb-free decoder expects."""
    try:
        return target.read(addr, size)
    except target.MemoryReadError as e:
        raise MemoryError(str(e)) from None


class RingSet:
    """Every ring found in the target: `rings` (decoded), `how` ('symbol' or 'scan'),
    `problems` (one line each: a header that did not validate, a ring that could not be
    read), and a merged index obj -> [Record] built on first use."""

    def __init__(self, rings, how, problems):
        self.rings, self.how, self.problems = rings, how, problems
        self._index = None
        self._per_obj = {}
        self._ring_of = {}       # id(record) -> the Ring it came from (thread labels)

    def index(self):
        if self._index is None:
            idx = {}
            for ring in self.rings:
                for obj, recs in decode.build_index(ring).items():
                    idx.setdefault(obj, []).extend(recs)
                    if len(self.rings) > 1:
                        for r in recs:
                            self._ring_of[id(r)] = ring
            if len(self.rings) > 1:
                for recs in idx.values():
                    recs.sort(key=lambda r: r.seq)
            self._index = idx
        return self._index

    def records_for(self, obj):
        """One object's records, oldest first. Uses the full index when it is already
        built; otherwise searches the raw ring bytes for the address (no full decode:
        a cold `pyref history` on 2^20 records stays well under a second)."""
        if self._index is not None:
            return self._index.get(obj, [])
        if obj not in self._per_obj:
            recs = []
            for ring in self.rings:
                for r in ring.records_for(obj):
                    recs.append(r)
                    self._ring_of[id(r)] = ring
            if len(self.rings) > 1:
                recs.sort(key=lambda r: r.seq)
            self._per_obj[obj] = recs
        return self._per_obj[obj]

    def records_of(self, objs):
        """{obj: records_for(obj)} for the addresses of the set `objs` that have records,
        in one pass over each ring's raw bytes (no full decode); kept for records_for."""
        if self._index is not None:
            return {o: self._index[o] for o in objs if o in self._index}
        if all(o in self._per_obj for o in objs):
            return {o: self._per_obj[o] for o in objs if self._per_obj[o]}
        merged = {}
        for ring in self.rings:
            for obj, recs in ring.records_of(objs).items():
                merged.setdefault(obj, []).extend(recs)
                for r in recs:
                    self._ring_of[id(r)] = ring
        for obj in objs:
            recs = merged.get(obj, [])
            if len(self.rings) > 1:
                recs.sort(key=lambda r: r.seq)
            self._per_obj[obj] = recs
        return merged

    def ring_of(self, rec):
        """The Ring a record of records_for()/index() came from."""
        return self._ring_of.get(id(rec), self.rings[0])


def _candidate_headers():
    """[(addr, how)] of ring headers: by symbol first, by scan when the symbol is absent."""
    problems = []
    ptr = target.symbol_u64("pyref_ring")
    if ptr:
        return [(ptr, "symbol")], problems
    if target.symbol_address("pyref_ring") is not None and ptr == 0:
        problems.append("pyref_ring is NULL: the runtime is loaded but has not created its "
                        "ring (PYREF=off, or the process stopped before libpyref's init)")
    regions = [(m.start, m.end) for m in target.mappings() if "w" in m.perms]
    found = decode.scan_for_headers(_read, regions)
    return [(a, "scan") for a in found], problems


def ring_set(required=True):
    """The decoded RingSet of the current target, cached until the inferior runs.
    Raises PyrefError with the reason when `required` and no ring is found."""
    target.require_target()
    cache = target.stop_cache()
    rs = cache.get("ringset")
    if rs is None:
        headers, problems = _candidate_headers()
        rings = []
        for addr, how in headers:
            try:
                rings.append(decode.decode_ring(_read, addr))
            except decode.RingError as e:
                problems.append("ring header at 0x%x: %s" % (addr, e))
        rs = RingSet(rings, headers[0][1] if headers else None, problems)
        cache["ringset"] = rs
    if required and not rs.rings:
        target.check_executable()  # the wrong binary hides libpyref's symbols: say that
        why = "; ".join(rs.problems) or _truncated_core() or (
            "no pyref ring in this process (is the extension built with pyref-config's "
            "flags and loaded?)")
        raise PyrefError(why)
    return rs


def _truncated_core():
    """A one-line reason when the target is a core file cut short (the ring may be in the
    missing part), else None."""
    if target.target_kind() != "core":
        return None
    try:
        from pyref import corefile
        path = target._core_file_path()
        if not path:
            return None
        with corefile.Core(path) as core:
            if core.truncated:
                return ("no pyref ring found: the core file is truncated at byte %d, so the "
                        "ring (and the list of loaded libraries) may be in the missing part"
                        % core.truncated_at)
    except (OSError, ValueError, MemoryError, AttributeError):
        return None
    return None


# ---------------------------------------------------------------------------------------
# Sites
# ---------------------------------------------------------------------------------------
def site_of(addr):
    """The decode.Site at a site address, cached per objfile generation, or None."""
    if not addr:
        return None
    cache = target.objfile_cache()
    key = ("site", addr)
    if key not in cache:
        cache[key] = decode.read_site(_read, addr)
    return cache[key]


def site_text(addr):
    """Site.short() of a record's site address; 'inside CPython' for none."""
    s = site_of(addr)
    if s is None and addr:
        return "site 0x%x (unreadable)" % addr
    return decode.where(s)


def thread_label(ring, rec):
    t = ring.threads[rec.thread] if rec.thread < len(ring.threads) else None
    if t is not None and t.serial == rec.tid and t.os_tid:
        return "LWP %d" % t.os_tid
    return "thread #%d (exited)" % rec.tid


# ---------------------------------------------------------------------------------------
# pyref ring
# ---------------------------------------------------------------------------------------
def ring_report(rs):
    """Text lines describing every ring of the RingSet."""
    out = []
    for p in rs.problems:
        out.append("warning: " + p)
    for ring in rs.rings:
        h = ring.header
        out.append("ring at 0x%x (found by %s), format v%d, pid %d" %
                   (ring.addr, rs.how, h.version, h.pid))
        out.append("  capacity     %d records per thread, %d-byte records, %d thread slots" %
                   (h.capacity, h.record_size, h.max_threads))
        out.append("  written      %d" % ring.written)
        out.append("  decoded      %d" % ring.decoded)
        out.append("  overwritten  %d%s" % (ring.overwritten,
                   "  (oldest history gone: the ring wrapped)" if ring.overwritten else ""))
        out.append("  torn         %d" % ring.torn)
        out.append("  lost         %d  (dropped by the re-entry guard or for want of a "
                   "thread slot)" % ring.lost)
        if ring.unreadable:
            out.append("  unreadable   %d  (ring memory missing from the target: core "
                       "truncated?)" % ring.unreadable)
        if ring.in_flight:
            out.append("  in flight    %d  (a record was being written when the process "
                       "stopped)" % ring.in_flight)
        out.append("  threads      %d seen" % ring.threads_seen)
        if ring.decoded:
            out.append("  sequence     %d .. %d" % (ring.first_seq, ring.last_seq))
        for e in ring.errors:
            out.append("  error: " + e)
    return out


# ---------------------------------------------------------------------------------------
# pyref history
# ---------------------------------------------------------------------------------------
def history(rs, addr, limit=None):
    """(lifetimes, shown, total): the object's records split into lifetimes, keeping only
    the last `limit` records when given. rs.ring_of(record) gives each record's ring."""
    recs = rs.records_for(addr)
    total = len(recs)
    if limit is not None and total > limit:
        recs = recs[-limit:]
    return events.lifetimes(recs), len(recs), total


def record_dict(ring, rec):
    s = site_of(rec.site)
    d = {"seq": rec.seq, "thread": thread_label(ring, rec), "op": rec.op_name,
         "before": rec.refcnt, "after": rec.after, "immortal": bool(rec.immortal),
         "file": s.file if s else None, "line": s.line if s else None,
         "function": s.func if s else None, "api": s.api if s else None}
    return d


def _type_name(addr):
    try:
        from pyref import objects
        t = objects.type_info(addr)
        return t.name if t.valid else "type 0x%x" % addr
    except PyrefError:
        return "type 0x%x" % addr


def record_line(ring, rec):
    flags = " immortal" if rec.immortal else ""
    if rec.shared:
        flags += " (not the owner thread: ob_ref_shared)"
    if rec.op_name in ("NEW", "BORROW", "STEAL"):
        s = site_of(rec.site)
        rule = s and s.api and capi.rule(s.api)
        if rule:
            flags += "  [%s: %s]" % (s.api, rule)
    if rec.op_name == "FREE":
        change = "freed (%s)" % _type_name(rec.refcnt & 0xFFFFFFFFFFFFFFFF)
    else:
        change = "%d -> %d" % (rec.refcnt, rec.after)
    return "  %8d  %-14s %-8s %-16s %s%s" % (rec.seq, thread_label(ring, rec), rec.op_name,
                                            change, site_text(rec.site), flags)


def history_json(rs, addr, lifetimes, shown, total, obj_state):
    return json.dumps({
        "address": "0x%x" % addr, "transitions": total, "shown": shown,
        "lifetimes": [[record_dict(rs.ring_of(r), r) for r in life] for life in lifetimes],
        "object": obj_state}, indent=1)


# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------
from pyref import commands, objects, settings  # noqa: E402  (commands imports gdb: keep decode-only
                                     # helpers above usable without it)


def object_state(addr):
    """{'type', 'refcount', 'state', 'reason'} of the address now, never raising."""
    try:
        info = objects.inspect(addr)
    except target.MemoryReadError:
        return {"type": None, "refcount": None, "state": "unreadable",
                "reason": "memory at 0x%x is not readable" % addr}
    except PyrefError as e:
        return {"type": None, "refcount": None, "state": "unknown", "reason": str(e)}
    return {"type": info.type.name if info.type else None,
            "refcount": str(info.refcount) if info.refcount is not None else None,
            "state": info.state, "reason": info.reason}


class Ring(commands.Subcommand):
    name = "ring"
    summary = "Describe the pyref ring: where it is, its capacity, records written and lost."
    details = """\
Finds the ring through the pyref_ring symbol (exported by libpyref, so a stripped
extension still works), else by scanning writable memory for its header. Counts:
written = decoded + overwritten + torn (+ unreadable when the core lacks ring memory);
lost records were never written (re-entry guard, no thread slot)."""
    examples = ("pyref ring", "pyref ring --json")
    completer = commands.gdb.COMPLETE_NONE

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(self, args, from_tty):
        rs = ring_set()
        if args.json:
            self.write(json.dumps({"rings": [{
                "address": "0x%x" % r.addr, "found_by": rs.how, "version": r.header.version,
                "capacity": r.header.capacity, "written": r.written, "decoded": r.decoded,
                "overwritten": r.overwritten, "torn": r.torn, "lost": r.lost,
                "unreadable": r.unreadable, "in_flight": r.in_flight,
                "threads_seen": r.threads_seen, "first_seq": r.first_seq,
                "last_seq": r.last_seq, "errors": list(r.errors)} for r in rs.rings],
                "problems": rs.problems}, indent=1) + "\n")
            return
        self.write("\n".join(ring_report(rs)) + "\n")


class History(commands.Subcommand):
    name = "history"
    summary = "Show every recorded reference-count transition of an object, oldest first."
    rest_argument = "expr"
    details = """\
One line per transition: sequence number, thread, operation, count before -> after, and
the C site file:line (function). When the address was freed and reused, each lifetime is
shown apart. Then the object's state now (as pyref show reports it)."""
    examples = ("pyref history op", "pyref history -n 20 0x7ffff7a1b2c0",
                "pyref history --json item")

    def add_arguments(self, parser):
        parser.add_argument("-n", type=int, default=None, metavar="N",
                            help="show only the last N transitions")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("expr", metavar="EXPR",
                            help="a GDB expression for the object's address")

    def run(self, args, from_tty):
        if args.n is not None and args.n <= 0:
            raise PyrefError("-n wants a positive number")
        target.require_target()
        addr = target.eval_address(args.expr)
        rs = ring_set()
        lifetimes, shown, total = history(
            rs, addr, args.n if args.n is not None else settings.records())
        state = object_state(addr)
        if args.json:
            self.write(history_json(rs, addr, lifetimes, shown, total, state) + "\n")
            return
        out = []
        if not total:
            out.append("no transitions of 0x%x in the ring" % addr)
            covered = sum(r.decoded for r in rs.rings)
            if any(r.overwritten for r in rs.rings):
                out.append("(the ring wrapped: it holds the last %d transitions only)" %
                           covered)
        else:
            out.append("%d transition%s of 0x%x%s" % (
                total, "" if total == 1 else "s", addr,
                ", last %d shown" % shown if shown < total else ""))
            for i, life in enumerate(lifetimes, 1):
                if len(lifetimes) > 1:
                    out.append("lifetime %d%s" % (i, " (current)" if i == len(lifetimes)
                                                  and life[-1].op_name not in
                                                  ("DEALLOC", "FREE") else ""))
                out.append("  %8s  %-14s %-8s %-16s %s" % ("seq", "thread", "op", "count",
                                                          "site"))
                for rec in life:
                    out.append(record_line(rs.ring_of(rec), rec))
        st = "now: %s" % state["state"]
        if state["type"]:
            st += ", %s" % state["type"]
        if state["refcount"] is not None:
            st += ", refcount %s" % state["refcount"]
        if state["reason"]:
            st += " (%s)" % state["reason"]
        out.append(st)
        self.write("\n".join(out) + "\n")
