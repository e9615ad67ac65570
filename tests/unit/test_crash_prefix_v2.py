"""Crash-prefix test of format 2's origin writes (docs/ring-format.md, "Origin records" and
"Write protocol"), on test_crash_prefix.py's models.

A BORROW/STEAL whose count and index fit the origin code is one record write, the
protocol of test_crash_prefix.py, with a format-2 origin word in `refcnt` and the code's
low byte in `delta`. One that does not fit is a two-slot write (ring.h
`pyref__record_pair_idle`): the origin with code 0, then its AUX ORIGIN, one `seq`, `head`
advanced by two at the end:

    B1  SQ  C0 O S R C1  C0b Ob Sb Rb C1b  H  B0
    (release fence after C0 and after C0b, C1/C1b/H release stores)

Every image a reader can see of either is decoded and must be one of
  - old / new: the window before or after the write;
  - lost-oldest: the old window less its m oldest records (m = 1, 2: the slots the write
    took in a full ring), those m counted torn: an origin whose AUX ORIGIN is not there is
    torn too (decode._check_origins), never shown with a count it does not have;
  - orphan: as lost-oldest, with the AUX ORIGIN decoded unattached at the slot it took
    (its fields exactly its own: what the spec says of an AUX it cannot attach);
never a record with fields of two writes, never a record with a count it was not written
with. Both models (COMPILER, and WEAK: what the fences promise on ARM/POWER).
"""
import struct

import pytest

import pyreftest  # noqa: F401  (puts gdbext/ on sys.path)
from pyref.reader.decode import decode_ring
from pyref.reader.ringformat import AUX, BORROW, DECREF, INCREF, STEAL
from ringimage import Writer, spec_origin_code, spec_origin_word
from test_crash_prefix import CAP, HALVES, M64, SERIAL, ideals, protocol, topo_sorted

AUX_ORIGIN, AUX_CONTAINER = 0x13, 1
FIELDS = ("obj", "site", "refcnt")


def history(kinds, seq0):
    """Slots for a kinds string: 'R' a record, 'O' a compact origin, 'P' an origin that
    does not fit (its slot and the AUX ORIGIN's after it, one write). Each slot a dict
    of the fields stored and `shown`: the tuples (minus pos) a reader gives for it."""
    out, seq = [], seq0
    for p, k in enumerate(kinds):
        obj = 0x7F0000100000 + 0x40 * len(out)
        site = 0x55500000 + 0x20 * (p % 3)
        if k == "R":
            op = (INCREF, DECREF)[p % 2]
            d = 1 if op == INCREF else -1
            out.append(dict(obj=obj, site=site, refcnt=2 + p, op=op, delta=d, seq=seq,
                            write=p, shown=[(obj, site, 2 + p, op, d, seq, SERIAL)]))
        elif k == "O":
            op, count, container, index = (BORROW, STEAL)[p % 2], 2 + p, \
                0x7F0000900000 + 0x40 * p, 300 + p
            code = spec_origin_code(count, index)
            assert code
            word, d = spec_origin_word(container, code)
            out.append(dict(obj=obj, site=site, refcnt=word, op=op, delta=d, seq=seq, write=p,
                            shown=[(obj, site, count, op, 0, seq, SERIAL),
                                   (container, AUX_CONTAINER, index, AUX, 0, seq, SERIAL)]))
        else:
            op, count, container, index = STEAL, 1 << 20, 0x7F0000900000 + 0x40 * p, 7
            assert not spec_origin_code(count, index)
            out.append(dict(obj=obj, site=site, refcnt=container, op=op, delta=0, seq=seq,
                            write=p, shown=[(obj, site, count, op, 0, seq, SERIAL),
                                            (container, AUX_CONTAINER, index, AUX, 0, seq,
                                             SERIAL)]))
            out.append(dict(obj=index, site=AUX_ORIGIN, refcnt=count, op=AUX, delta=0,
                            seq=seq, write=p, shown=[]))
        seq += 1
    return out


def commit_word(rec):
    return (rec["seq"] & 0xFFFFFFFF) | rec["op"] << 32 | (rec["delta"] & 0xFF) << 40 | \
        SERIAL << 48


def pair_protocol(model):
    """(stores, before) of the two-slot write: the first slot's stores as one record's,
    then the second slot's (suffix b), one SQ, one head update (docstring)."""
    b = [h + "b" for h in HALVES]
    stores = ["B1", "SQ", "C0", *HALVES, "C1", "C0b", *b, "C1b", "H", "B0"]
    before = {s: set() for s in stores}

    def order(x, y):
        before[y].add(x)

    if model == "compiler":
        for s in stores[1:]:
            order("B1", s)
    else:
        order("B1", "B0")
        order("C0", "C1")
        order("C0b", "C1b")
    fence1 = ["B1", "SQ", "C0"]                       # release fence after C0
    for x in fence1:
        for y in stores:
            if y not in fence1:
                order(x, y)
    fence2 = fence1 + list(HALVES) + ["C1", "C0b"]     # release fence after C0b
    for x in fence2:
        for y in stores:
            if y not in fence2:
                order(x, y)
    for x in fence1 + list(HALVES):                   # C1 release
        order(x, "C1")
    for x in fence2 + b:                              # C1b release
        order(x, "C1b")
    for x in stores:
        if x not in ("H", "B0"):
            order(x, "H")                             # head: release
    if model == "compiler":
        for x in stores:
            if x != "B0":
                order(x, "B0")
    return stores, before


class Image:
    """One thread that has written the slots before `k` and is writing the write at `k`
    (one slot, or two for a 'P'), in a format-2 ring of CAP records."""

    def __init__(self, hist, k):
        self.hist, self.k = hist, k
        self.n = sum(1 for r in hist if r["write"] == hist[k]["write"])
        self.w = Writer(capacity=CAP, max_threads=2, seq=0, version=2)
        self.w.register(0)
        self.w.threads[0]["serial"] = SERIAL
        for p in range(k):
            self._put(p, hist[p], commit_word(hist[p]))
        self.old = [bytes(self.w.ring_buf(0)[((k + j) % CAP) * 32:((k + j) % CAP) * 32 + 32])
                    for j in range(self.n)]

    def _put(self, p, r, commit):
        struct.pack_into("<QQqQ", self.w.ring_buf(0), (p % CAP) * 32, r["obj"] & M64,
                         r["site"], r["refcnt"], commit)

    def show(self, done):
        for j, sfx in zip(range(self.n), ("", "b")):
            new = self.hist[self.k + j]
            obj, site, refcnt, commit = struct.unpack("<QQqQ", self.old[j])
            vals = {"obj": obj, "site": site, "refcnt": refcnt & M64}
            for f in FIELDS:
                nv = new[f] & M64
                if f + "_lo" + sfx in done:
                    vals[f] = vals[f] & ~0xFFFFFFFF | nv & 0xFFFFFFFF
                if f + "_hi" + sfx in done:
                    vals[f] = vals[f] & 0xFFFFFFFF | nv & ~0xFFFFFFFF & M64
            if "C0" + sfx in done:
                commit = 0
            if "C1" + sfx in done:
                commit = commit_word(new)
            r = vals["refcnt"]
            struct.pack_into("<QQqQ", self.w.ring_buf(0), ((self.k + j) % CAP) * 32,
                             vals["obj"], vals["site"], r - (1 << 64) if r >> 63 else r, commit)
        t = self.w.threads[0]
        t["head"] = self.k + (self.n if "H" in done else 0)
        t["busy"] = int("B1" in done and "B0" not in done)
        self.w.seq = self.hist[self.k]["seq"] + ("SQ" in done)
        self.w.flush()
        return decode_ring(self.w.mem.read, self.w.addr)


def flat(ring):
    return sorted((x.pos, x.obj, x.site, x.refcnt, x.op | x.flags, x.delta, x.seq, x.tid)
                  for r in ring.records for x in (r,) + r.aux)


def window(hist, lo, hi):
    """The tuples a reader shows of slots [lo, hi): a write whose first slot is below lo
    shows nothing (its origin is gone), its AUX ORIGIN alone an orphan AUX."""
    out = []
    for p in range(max(lo, 0), hi):
        r = hist[p]
        first = p == 0 or hist[p - 1]["write"] != r["write"]
        if first:
            out += [(p,) + t for t in r["shown"]]
        elif p == lo:                           # an AUX ORIGIN whose origin fell off
            out.append((p, r["obj"], r["site"], r["refcnt"], r["op"], 0, r["seq"], SERIAL))
    return sorted(out)


def judge(img, ring):
    hist, k, n = img.hist, img.k, img.n
    assert ring.written == ring.decoded + ring.overwritten + ring.torn + ring.unreadable + \
        ring.rejected
    got = flat(ring)
    if got == window(hist, k - CAP, k) and ring.torn == 0:
        return "old", ""
    if got == window(hist, k + n - CAP, k + n) and ring.torn == 0:
        return "new", ""
    for m in (1, 2):
        if k + m > CAP and got == window(hist, k - CAP + m, k) and ring.torn == m:
            return "lost-oldest", ""
    if n == 2:
        aux = hist[k + 1]
        orphan = (aux["obj"], aux["site"], aux["refcnt"], AUX, 0, aux["seq"], SERIAL)
        rest = [g for g in got if g[1:] != orphan]
        for m in (1, 2):
            if len(rest) == len(got) - 1 and rest == window(hist, k - CAP + m, k) and \
                    ring.torn == m - 1:
                return "orphan", ""
    shown = {t for p in range(k + n) for t in hist[p]["shown"]} | {
        (r["obj"], r["site"], r["refcnt"], AUX, 0, r["seq"], SERIAL) for r in hist[:k + n]
        if r["op"] == AUX}
    alien = [g for g in got if g[1:] not in shown]
    if alien:
        return "wrong", "fields of no single write: %s" % (alien,)
    return "misplaced", "got %s (torn %d)" % (got, ring.torn)


HISTORIES = {
    "compact": "ROROROROROR",
    "pairs": "RPRPRPRP",
    "pairs-back-to-back": "PPPPPP",
    "mixed": "OPROOPRPO",
}
SEQ0 = {"seq-0": 0, "seq-wraps-2^32": (1 << 32) - 3}


def run(model, kinds, seq0):
    hist = history(kinds, seq0)
    verdicts = {}
    for k in range(1, len(hist)):
        if hist[k]["write"] == hist[k - 1]["write"]:
            continue                              # the second slot of a pair write
        img = Image(hist, k)
        stores, before = pair_protocol(model) if img.n == 2 else protocol(model)
        for done in ideals(stores, before):
            ring = img.show(done)
            verdict, detail = judge(img, ring)
            if verdict != "wrong" and model == "compiler":
                assert ring.in_flight == ("B1" in done and "B0" not in done)
            verdicts.setdefault(verdict, []).append((k, sorted(done), detail))
    return verdicts


def test_pair_protocol_is_consistent():
    for model in ("compiler", "weak"):
        stores, before = pair_protocol(model)
        topo_sorted(stores, before)
        got = set(ideals(stores, before))
        program = [frozenset(stores[:i]) for i in range(len(stores) + 1)]
        assert set(program) <= got
    assert frozenset({"B1", "SQ", "C0", *HALVES, "C0b"}) in \
        set(ideals(*pair_protocol("compiler")))            # C0b before C1: allowed


@pytest.mark.parametrize("hname", sorted(HISTORIES))
@pytest.mark.parametrize("sname", sorted(SEQ0))
def test_every_prefix_of_a_v2_write_is_old_new_or_short(hname, sname):
    v = run("compiler", HISTORIES[hname], SEQ0[sname])
    bad = {x: v[x][:3] for x in v if x not in ("old", "new", "lost-oldest", "orphan")}
    assert not bad, bad
    assert v.get("old") and v.get("new") and v.get("lost-oldest")
    if "P" in HISTORIES[hname]:
        assert v.get("orphan")


@pytest.mark.parametrize("hname", sorted(HISTORIES))
def test_weak_order_never_shows_a_count_not_written(hname):
    v = run("weak", HISTORIES[hname], 0)
    assert not v.get("wrong"), v["wrong"][:3]
    for k, done, detail in v.get("misplaced", []):
        assert "B0" in done and "H" not in done, (k, done, detail)  # as test_crash_prefix


def test_a_reader_without_the_origin_check_is_caught(monkeypatch):
    """The same enumeration with a decoder that takes an origin's code-0 word for a count
    (no _check_origins) finds images with counts that were never written."""
    from pyref.reader import decode
    monkeypatch.setattr(decode, "_check_origins", lambda tw: (0, 0))
    assert run("compiler", HISTORIES["pairs"], 0).get("wrong")
