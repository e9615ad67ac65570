"""What the rings could not tell: one Caveats object per target, built from what the ring
reader met (a core cut short, a header that did not validate, descriptors, records or
sites that could not be read, torn, rejected or lost records, a ring found but not read)
and carried to every answer, so that no command says "no leaks", "no transitions" or "not
traced" when the evidence for it was not there to read.

Two degrees: a caveat that leaves every record read intact but says the history is
partial (the ring wrapped is not one: rules/leaks.py ring_coverage says that) and damage
(`damaged`): records that existed could not be read or were rejected, so any verdict drawn
from the rest may be wrong. `for_object(addr)` narrows damage to one object: torn and
rejected slots still name theirs in their obj field; unreadable ones and a truncated core
could hold anyone's.

gdb-free: inferior/rings.py fills it, commands word their answers with it.
"""
from __future__ import annotations

from dataclasses import dataclass

# Kinds. DAMAGE: records that existed and could not be used (any object's history may lack
# them). The others describe the reading without making a record suspect.
TRUNCATED = "truncated"          # the core file is shorter than its program headers say
UNREAD_RING = "unread-ring"      # a ring (header) found and not decoded
UNREADABLE = "unreadable"        # records or descriptors in memory the target lacks
TORN = "torn"                    # slots of a window with no commit, or that fail the checks
REJECTED = "rejected"            # slots failing the plausibility checks
REJECTED_RING = "rejected-ring"  # descriptors or a counter failing them: anyone's records
LOST = "lost"                    # records never written (no thread slot, re-entry guard)
SITES = "sites"                  # site structs unreadable: records without a file:line
NOTE = "note"                    # anything else the reader noted
DAMAGE = (TRUNCATED, UNREAD_RING, UNREADABLE, TORN, REJECTED, REJECTED_RING, LOST)
_WHOLE = (TRUNCATED, UNREAD_RING, UNREADABLE, REJECTED_RING, LOST)   # anyone's records


@dataclass
class Caveat:
    kind: str
    text: str
    count: int = 0               # records (or sites) concerned, 0 when not countable


class Caveats:
    """The caveats of one target's rings, in the order met. `suspects`: object addresses
    named by torn or rejected slots (their obj field survives a missing commit)."""

    def __init__(self):
        self.items = []
        self.suspects = set()
        self._sites = set()
        self._site_caveat = None

    # --- building ---------------------------------------------------------------------
    def add(self, kind, text, count=0):
        if not any(c.kind == kind and c.text == text for c in self.items):
            self.items.append(Caveat(kind, text, count))
        return self

    def site_unreadable(self, addr):
        """Counts a record's site struct that could not be read (one caveat, kept current)."""
        if addr in self._sites:
            return
        self._sites.add(addr)
        n = len(self._sites)
        text = ("%d site%s of records unreadable (their file:line unknown; such records "
                "are not counted as traced code)" % (n, "" if n == 1 else "s"))
        if self._site_caveat is None:
            self._site_caveat = Caveat(SITES, text, n)
            self.items.append(self._site_caveat)
        else:
            self._site_caveat.text, self._site_caveat.count = text, n

    @classmethod
    def of_rings(cls, rings, problems=(), truncation=None, unread=()):
        """The caveats of decoded rings (decode.Ring) and the one-line `problems` met while
        finding them; `truncation`: the text saying the core is cut short, or None;
        `unread`: one line per ring found but not read."""
        cv = cls()
        if truncation:
            cv.add(TRUNCATED, truncation)
        for text in unread:
            cv.add(UNREAD_RING, text)
        for p in problems:
            if p.startswith("ring header at"):
                cv.add(UNREAD_RING, p)
        for r in rings:
            if r.unreadable:
                cv.add(UNREADABLE, "%d record%s of the ring at %#x unreadable" % (
                    r.unreadable, "" if r.unreadable == 1 else "s", r.addr), r.unreadable)
            if len(r.threads) < r.header.max_threads:
                cv.add(UNREADABLE, "%d of %d thread descriptors of the ring at %#x "
                       "unreadable: their records were not read" % (
                           r.header.max_threads - len(r.threads), r.header.max_threads,
                           r.addr))
            oldest = getattr(r, "torn_oldest", 0)
            torn = r.torn - oldest
            if torn:
                cv.add(TORN, "%d torn record%s in the ring at %#x (no commit, or fields no "
                       "writer writes)" % (torn, "" if torn == 1 else "s", r.addr), torn)
            if oldest:
                cv.add(NOTE, "%d oldest record%s being overwritten when the process stopped "
                       "(torn, as an overwritten one would be gone)" % (
                           oldest, "" if oldest == 1 else "s"), oldest)
            rejected = getattr(r, "rejected", 0)
            if rejected:
                why = ", ".join("%d %s" % (n, k) for k, n in
                                sorted(getattr(r, "rejections", {}).items()))
                cv.add(REJECTED, "%d record%s rejected as implausible%s" % (
                    rejected, "" if rejected == 1 else "s", " (%s)" % why if why else ""),
                    rejected)
            for text in getattr(r, "rejected_descriptors", ()):
                cv.add(REJECTED_RING, text)
            for text in r.errors:
                if text.startswith("the header's counter"):
                    cv.add(REJECTED_RING, text)
            if r.lost:
                cv.add(LOST, "%d record%s lost (never written: no free thread slot, or "
                       "dropped by the re-entry guard)" % (r.lost, "" if r.lost == 1 else "s"),
                       r.lost)
            cv.suspects |= getattr(r, "suspects", set())
        return cv

    # --- questions --------------------------------------------------------------------
    def __bool__(self):
        return bool(self.items)

    @property
    def truncated(self) -> bool:
        return any(c.kind == TRUNCATED for c in self.items)

    @property
    def damaged(self) -> bool:
        """Records existed that could not be read or used: any answer may lack them."""
        return any(c.kind in DAMAGE for c in self.items)

    @property
    def missing(self) -> int:
        """Records known to exist and not used (unreadable, torn, rejected, lost)."""
        return sum(c.count for c in self.items if c.kind in (UNREADABLE, TORN, REJECTED, LOST))

    def reason(self) -> str:
        """The damage in one line ('' when none)."""
        return "; ".join(c.text for c in self.items if c.kind in DAMAGE)

    def for_object(self, addr) -> str | None:
        """Why one object's recorded history may be incomplete, or None: damage that may
        hide anyone's records, or a torn or rejected slot naming this object."""
        whole = [c.text for c in self.items if c.kind in _WHOLE]
        if addr is not None and addr in self.suspects:
            whole.append("a torn or rejected record names 0x%x" % addr)
        return "; ".join(whole) or None

    # --- words ------------------------------------------------------------------------
    def lines(self, said="", prefix="caveat: ") -> list:
        return lines(self.to_json(), said, prefix)

    def none_found(self, what, examined) -> str:
        return none_found(self.to_json(), what, examined)

    def unknown(self, what) -> str:
        """'WHAT unknown: why' — for an answer the damage leaves without evidence."""
        return "%s unknown: %s" % (what, self.reason() or "the ring could not be read")

    def to_json(self) -> dict:
        return {"complete": not self.damaged, "truncated": self.truncated,
                "missing_records": self.missing,
                "caveats": [{"kind": c.kind, "text": c.text, "count": c.count}
                            for c in self.items]}


# The words, from Caveats.to_json() (what a report dict carries).
def lines(cv, said="", prefix="caveat: ") -> list:
    """One line per caveat, but those whose text the answer `said` already."""
    return [prefix + c["text"] for c in (cv or {}).get("caveats", ()) if c["text"] not in said]


def partial(cv) -> str:
    """Why an answer "none found" would be partial ('' when it would not): damage, or
    records whose sites could not be read (such records are not counted)."""
    return "; ".join(c["text"] for c in (cv or {}).get("caveats", ())
                     if c["kind"] in DAMAGE + (SITES,))


def none_found(cv, what, examined) -> str:
    """'no WHAT in the N records that could be read; M could not (why)' when the caveats
    `cv` say records are missing or some records' sites unreadable (such records are
    not counted), else 'no WHAT (N records examined)'."""
    why = partial(cv)
    if not why:
        return "no %s (%d records examined)" % (what, examined)
    m = cv["missing_records"]
    return "no %s in the %d records that could be read; %s could not (%s)" % (
        what, examined, "%d" % m if m else "others", why)


def apply_to_verdict(report, caveats, addr):
    """The one place damaged evidence overrides a `pyref why` verdict: with the core
    truncated, or damage that may hide the object's records (Caveats.for_object), the
    verdict becomes `unknown` and says what the intact records alone would have said.
    Adds `evidence` caveats to the report dict either way; returns it."""
    report["caveats"] = caveats.to_json()
    why = caveats.for_object(addr) if addr is not None else (
        caveats.reason() if caveats.damaged else None)
    if caveats.truncated and not why:
        why = caveats.reason()
    if why and report.get("verdict") != "unknown":
        report["verdict_if_complete"] = report.get("verdict")
        report["summary"] = "evidence incomplete: %s (the records that could be read " \
                            "alone say: %s%s)" % (why, report.get("verdict"),
                                                 ": " + report["summary"]
                                                 if report.get("summary") else "")
        report["verdict"] = "unknown"
    elif why:
        report.setdefault("missing", []).append("evidence incomplete: " + why)
    return report
