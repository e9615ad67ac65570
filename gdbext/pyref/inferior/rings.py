"""The rings of the target as GDB sees them (a RingSet): finding them, decoding them once
per stop, naming a record's site and thread. `pyref ring`, `history`, `why`, `owners`,
`leaks`, `watch` and `explain` all reach the ring here.

Finding: the `pyref_ring` pointer (libpyref exports it in .dynsym, so this works on a
stripped extension too); failing that, a scan of the writable mappings for the header's
magic (ringformat.scan_for_headers). Decoding: one bulk read per thread ring through
target.read, parsed by the gdb-free reader/decode.py, then an index by object address.
Both are kept in target.stop_cache(), so a second query at the same stop costs a dict
lookup; the cache is dropped when the inferior runs or objfiles change.
"""
import os

from pyref.errors import PyrefError, RingError
from pyref.inferior import target
from pyref.reader import decode, evidence, extcheck, ringformat, sites


class RingSet:
    """Every ring found in the target: `rings` (decoded), `how` ('symbol' or 'scan'),
    `problems` (one line each: a header that did not validate, a ring that could not be
    read), `caveats` (reader/evidence.py: what the answers drawn from these rings must
    say they lack), and a merged index obj -> [Record] built on first use."""

    def __init__(self, rings, how, problems, caveats=None):
        self.rings, self.how, self.problems = rings, how, problems
        self.caveats = caveats if caveats is not None else evidence.Caveats()
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
                    recs.sort(key=lambda r: self.ring_of(r).merge_key(r))
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
                recs.sort(key=lambda r: self.ring_of(r).merge_key(r))
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
                if len(self.rings) > 1:      # ring_of's default is the only ring
                    for r in recs:
                        self._ring_of[id(r)] = ring
        for obj in objs:
            recs = merged.get(obj, [])
            if len(self.rings) > 1:
                recs.sort(key=lambda r: self.ring_of(r).merge_key(r))
            self._per_obj[obj] = recs
        return merged

    def harm_candidates(self, sane_bits=40):
        """decode.Ring.harm_candidates over every ring (a superset: test each closely)."""
        out = set()
        for ring in self.rings:
            out |= ring.harm_candidates(sane_bits)
        return out

    def first_seen_order(self, found):
        """The objects of `found` ({obj: records}, from records_of) in the order index()
        would list them: by the first ring holding a record of each, then by where its
        first record there falls in that ring's merged order."""
        if len(self.rings) == 1:
            # each object's records are in the ring's merged order: the first is the least
            ring = self.rings[0]
            return sorted(found, key=lambda obj: (ring.merge_key(found[obj][0]),
                                                  found[obj][0].thread, found[obj][0].pos))
        pos = {id(r): k for k, r in enumerate(self.rings)}

        def key(obj):
            return min((pos.get(id(self.ring_of(r)), 0), self.ring_of(r).merge_key(r),
                        r.thread, r.pos) for r in found[obj])
        return sorted(found, key=key)

    def ring_of(self, rec):
        """The Ring a record of records_for()/index() came from."""
        return self._ring_of.get(id(rec), self.rings[0])


SCAN_LIVE_MAX = 256 << 20       # writable bytes scanned for headers in a live process
SCAN_CORE_MAX = 4 << 30         # ... in a core, when a symbol already names a ring


def _candidate_headers():
    """([(addr, how)], problems, unread, notes): the ring headers of the target, the
    one-line problems met, the headers found and not read, and what was not searched.
    Every mapped file
    defining `pyref_ring` points at one (the shared runtime's, and one per extension
    linked with --static-libs); a scan of the writable memory for the header's magic
    finds those no symbol names (a stripped static extension). A live process with more
    than SCAN_LIVE_MAX writable bytes (a core with more than SCAN_CORE_MAX) is scanned only
    when no symbol names a ring, and `notes` says so."""
    problems, unread, notes = [], [], []
    found = {}
    ptr = target.symbol_u64("pyref_ring")
    if ptr:
        found[ptr] = "symbol"
    named = target.symbol_addresses("pyref_ring")
    for path, sym in named:
        try:
            p = target.read_u64(sym)
        except target.MemoryReadError:
            continue
        if p:
            found.setdefault(p, "symbol")
    if not found and (named or target.symbol_address("pyref_ring") is not None):
        problems.append("pyref_ring is NULL: the runtime is loaded but has not created its "
                        "ring (PYREF=off, or the process stopped before libpyref's init)")
    regions = [(m.start, m.end) for m in target.mappings() if "w" in m.perms]
    size = sum(e - a for a, e in regions)
    live = target.target_kind() == "live"
    if found and size > (SCAN_LIVE_MAX if live else SCAN_CORE_MAX):
        notes.append("rings that no pyref_ring symbol names were not searched for: %d MiB "
                     "of writable memory is more than a scan reads here (a stripped "
                     "--static-libs extension's ring would be missed)" % (size >> 20))
    else:
        rejects = []
        for a in ringformat.scan_for_headers(target.read, regions, rejects):
            found.setdefault(a, "scan")
        unread += ["ring header at %#x not read: %s" % (a, why) for a, why in rejects
                   if not why.startswith("not scanned")]
        notes += [why for _, why in rejects if why.startswith("not scanned")]
    return sorted(found.items()), problems, unread, notes


def ring_set(required=True):
    """The decoded RingSet of the current target, cached until the inferior runs.
    Raises PyrefError with the reason when `required` and no ring is found."""
    target.require_target()
    cache = target.stop_cache()
    ringset = cache.get("ringset")
    if ringset is None:
        headers, problems, unread, notes = _candidate_headers()
        rings = []
        for addr, how in headers:
            try:
                ring = decode.decode_ring(target.read, addr)
            except RingError as e:
                problems.append("ring header at 0x%x: %s" % (addr, e))
                continue
            ring.found_by = how
            rings.append(ring)
        ringset = cache["ringset"] = RingSet(
            rings, headers[0][1] if headers else None, problems,
            evidence.Caveats.of_rings(rings, problems, target.core_truncation(), unread))
        for n in notes:
            ringset.caveats.add(evidence.NOTE, n)
        note = empty_note(ringset)
        if note:
            problems.append(note)
    if required and not ringset.rings:
        target.check_executable()  # the wrong binary hides libpyref's symbols: say that
        raise PyrefError(no_ring_text(ringset))
    return ringset


def no_ring_text(ringset):
    """Why no ring was read, in one line: a truncated core first (the ring may be in the
    missing part: never "not traced" then), then the headers that did not validate."""
    parts = []
    trunc = target.core_truncation()
    if trunc:
        parts.append("ring unknown: %s, so the ring (and the list of loaded libraries) may "
                     "be in the missing part" % trunc)
    parts += ringset.problems
    return "; ".join(parts) or ("no pyref ring in this process (is the extension built "
                                "with pyref-config's flags and loaded?)")


# ---------------------------------------------------------------------------------------
# Sites and threads
# ---------------------------------------------------------------------------------------
def site_of(addr):
    """The sites.Site at a site address, cached per objfile generation, or None."""
    if not addr:
        return None
    site = target.cached(("site", addr), lambda: sites.read_site(target.read, addr))
    if site is None or site.file == "?":       # no struct, or its strings unreadable
        ringset = target.stop_cache().get("ringset")
        if ringset is not None:
            ringset.caveats.site_unreadable(addr)
    return site


def site_text(addr):
    """Site.short() of a record's site address; 'inside CPython' for none."""
    s = site_of(addr)
    if s is None and addr:
        return "site 0x%x (unreadable)" % addr
    return sites.where(s)


def thread_label(ring, rec):
    """'LWP N' of the thread that wrote a record, or 'thread #serial (exited)'."""
    t = ring.threads[rec.thread] if rec.thread < len(ring.threads) else None
    if t is not None and t.serial == rec.tid and t.os_tid:
        return "LWP %d" % t.os_tid
    return "thread #%d (exited)" % rec.tid


def empty_note(ringset):
    """One line when the rings hold no record at all, naming the cause when a loaded
    module shows it (reader/extcheck.py): one that links libpyref.so but was compiled
    against the interpreter's Python.h, not the shim's. None when a record was written."""
    if not ringset.rings or any(r.written for r in ringset.rings) or ringset.caveats.damaged:
        return None
    return target.cached("rings.empty_note", _empty_note)


def _empty_note():
    untraced = []
    for path in sorted({o.filename for o in target.objfiles() if o.filename}):
        try:
            c = extcheck.check(path, sites=False)
        except (OSError, ValueError, IndexError):
            continue
        if c.needs_runtime and not c.uses:
            untraced.append(path)
    if not untraced:
        return "the ring is empty: no traced code has run yet"
    return ("the ring is empty: %s link%s libpyref.so but record%s nothing: the shim was not "
            "first on the include path, so the interpreter's Python.h was compiled in "
            "(`pyref-config --check FILE` says more)" % (
                ", ".join(os.path.basename(p) for p in untraced),
                "" if len(untraced) > 1 else "s", "" if len(untraced) > 1 else "s"))
