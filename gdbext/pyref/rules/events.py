"""One object's recorded transitions as the rules read them: Event (a ring record with its
site resolved), from_records() (the one way from decode.Record to Event) and lifetimes()
(the one way to cut an address's history where an object ended and another began).

A lifetime ends at a DEALLOC (traced code released the last reference) or a FREE (the
allocator hook saw the memory freed). A FREE right after a DEALLOC belongs to the DEALLOC's
lifetime: with the allocator hook on, a traced owner's last DECREF is followed by the
hook's FREE of the same memory, and the DEALLOC, not the FREE, says where the object died.
A STEAL right after the end belongs to the ended lifetime too: the shim writes a steal's
record when the call returns, and a call that steals may release the reference at once
(PyList_SetItem on a bad index), so the object died inside the call that the STEAL names.
"""
from dataclasses import dataclass

from pyref.reader.sites import Site, where

ACQUIRE = ("NEW", "INCREF")
RELEASE = ("DECREF", "DEALLOC")
ENDS_LIFE = ("DEALLOC", "FREE")


@dataclass
class Event:
    """One recorded transition with its site resolved. `site` is None for a record the
    runtime wrote (FREE: inside CPython); `thread` names the writing thread."""
    seq: int
    op: str                      # INCREF DECREF DEALLOC NEW BORROW STEAL FREE ... (USE)
    before: int
    after: int
    site: Site = None
    thread: str = None
    immortal: bool = False

    @property
    def op_name(self):
        return self.op

    @property
    def refcnt(self):
        """The count before the transition, under decode.Record's name (lifetimes())."""
        return self.before

    @property
    def file(self):
        return self.site.file if self.site is not None else None

    @property
    def line(self):
        return self.site.line if self.site is not None else None

    @property
    def func(self):
        return self.site.func if self.site is not None else None

    @property
    def api(self):
        """The C-API call or macro at the site."""
        return self.site.api if self.site is not None else None

    def where(self):
        return where(self.site)

    def how(self):
        """'borrowed from PyTuple_GetItem at ext.c:40 (f)' and the like."""
        what = {"BORROW": "borrowed from", "STEAL": "stolen by", "NEW": "new reference from",
                "INCREF": "reference taken with", "DECREF": "released with",
                "DEALLOC": "last reference released with"}.get(self.op, self.op.lower())
        return "%s %s at %s" % (what, self.api or self.op, self.where())


def owner_key(e):
    """The function an event belongs to, whose account the ownership rules keep."""
    return (e.func, e.file)


def from_records(records, site_of, thread_of=None):
    """[Event] of decode.Records in their order. `site_of(addr)` gives the Site of a
    record's site address (None when unresolved); `thread_of(record)`, when given, the
    writing thread's label."""
    return [Event(seq=r.seq, op=r.op_name, before=r.refcnt, after=r.after,
                  site=site_of(r.site) if r.site else None,
                  thread=thread_of(r) if thread_of is not None else None,
                  immortal=bool(r.immortal))
            for r in records]


def lifetimes(items):
    """One address's Events or decode.Records (in ring order) cut into lifetimes: a DEALLOC
    or FREE ends one, the next item starts another; a FREE right after a DEALLOC, and a
    STEAL right after either, belong to the ended lifetime (module docstring). A NEW whose
    count is 1 starts a lifetime too: a fresh object, whatever lived at the address
    before is gone even if its end was not recorded (an untraced free, the ring wrapped)."""
    out = []
    cur = []
    ended_by = None
    for r in items:
        op = r.op_name
        if not cur and ended_by == "DEALLOC" and op == "FREE":
            out[-1].append(r)
            ended_by = "FREE"
            continue
        if not cur and ended_by is not None and op == "STEAL":
            out[-1].append(r)          # the steal whose call freed it (module docstring)
            ended_by = "STEAL"
            continue
        if cur and op == "NEW" and r.refcnt == 1 and not r.immortal:
            out.append(cur)            # a fresh object: the previous end went unrecorded
            cur = []
        cur.append(r)
        ended_by = None
        if op in ENDS_LIFE:
            out.append(cur)
            cur = []
            ended_by = op
    if cur:
        out.append(cur)
    return out


def end_of(life):
    """The item that ended a lifetime (its first DEALLOC or FREE: a DEALLOC followed by the
    hook's FREE ended at the DEALLOC), or None for a lifetime still running."""
    return next((e for e in life if e.op_name in ENDS_LIFE), None)


def current_lifetime(events):
    """The events of the object's current lifetime (lifetimes()' last, when it has not
    ended; [] when the last one ended)."""
    lives = lifetimes(events)
    if not lives or end_of(lives[-1]) is not None:
        return []
    return lives[-1]
