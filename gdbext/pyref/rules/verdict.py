"""From an object's recorded transitions to a verdict: which line of C released a reference
it did not own, or used a pointer after its owner let it go. No gdb here: the input is a
list of Event (one per ring record, sites already resolved) and what is known of the object
now; the output is a Verdict. `pyref why` and `pyref-postmortem` print it.

The rules are CPython's reference-ownership rules, applied per C function:

- A function *owns* a reference when it got it from a call returning a new reference (NEW)
  or made it with Py_INCREF/Py_NewRef (INCREF). It *borrows* when a call returned a
  borrowed reference (BORROW). It *gives a reference away* when a call steals it (STEAL).
- Releasing (DECREF, DEALLOC) or giving away (STEAL) is wrong when the function owns no
  reference at that moment *and* its own last event on the object says why: the reference
  was borrowed (BORROW), already stolen (STEAL) or already released (DECREF). Without such
  evidence — the function may have been handed ownership by code pyref did not see — there
  is no culprit, and the verdict says what is missing. Singletons (None, True, False) are
  the one exception: their pointers come from globals, never from a call, so a release
  with no acquisition in the same function is itself the evidence.
- Use after free: a recorded operation on the address after the lifetime ended (DEALLOC,
  or FREE seen by the allocator hook) is a use of a dangling pointer; its origin is the
  function's last acquisition of the object before the free (typically a BORROW).

Version awareness: on 3.12+ immortal objects are never freed, so an unmatched release of
an immortal object is "harmless here, a crash on 3.11 and earlier"; on 3.11 and earlier
the same release is a real bug that 3.12+ would hide.
"""
from dataclasses import dataclass, field

from pyref.rules import capi
from pyref.rules.events import (ACQUIRE, ENDS_LIFE, RELEASE, Event, end_of, lifetimes,
                                owner_key)

# What each kind of event means, in the words of the C-API rules (ledger notes, and the
# rule `pyref history` and `pyref explain` show beside a record).
RULES = {
    "NEW": "a new reference: the caller owns it and must release it",
    "INCREF": "a new reference made with Py_INCREF: the caller owns it",
    "BORROW": "a borrowed reference: do not DECREF it; INCREF it to keep it past a call "
              "that may run Python code",
    "STEAL": "the reference is given to the callee: do not DECREF it afterwards",
    "DECREF": "releases one owned reference",
    "DEALLOC": "releases the last reference: the object is freed here",
    "FREE": "the interpreter freed the object's memory",
}


@dataclass
class Verdict:
    kind: str                    # premature-free double-release use-after-free leak
                                 # not-a-refcount-bug unknown
    summary: str                 # one sentence
    culprit: Event = None
    origin: Event = None
    freed_at: Event = None
    why: str = ""                # the rule that was broken
    missing: list = field(default_factory=list)   # evidence we do not have
    ledger: list = field(default_factory=list)    # [(Event, note)]
    version_note: str = ""


def api_rule(e):
    """The rule the event's call follows, in the table's words when the call is known."""
    if e.op in ("NEW", "BORROW", "STEAL") and e.api:
        r = capi.rule(e.api)
        if r:
            return "%s: %s" % (e.api, r)
    return RULES.get(e.op)


def ledger(events):
    """[(Event, note)]: each event with what it did to its function's account."""
    owned = {}
    out = []
    for e in events:
        k = owner_key(e)
        if e.op in ACQUIRE:
            owned[k] = owned.get(k, 0) + 1
            note = "%s owns %d" % (e.func, owned[k])
        elif e.op in RELEASE or e.op == "STEAL":
            owned[k] = owned.get(k, 0) - 1
            if not e.file:
                note = ""
            elif owned[k] < 0:   # released or gave away more than it had acquired
                note = "%s owned no reference to release" % e.func
                owned[k] = 0
            else:
                note = "%s owns %d" % (e.func, owned[k])
        elif e.op == "BORROW":
            note = "%s borrows" % e.func
        else:
            note = ""
        rule = api_rule(e)
        if rule:
            note = (note + "; " if note else "") + rule
        out.append((e, note))
    return out


def unowned_release(life, singleton):
    """The first release or steal in one lifetime's events by a function that owned
    nothing then, with the evidence: (culprit, origin, kind, why), or None. `singleton`
    as analyze() takes it."""
    owned, last = {}, {}
    for e in life:
        if e.file is None:                    # the runtime's own records (FREE ...)
            continue
        k = owner_key(e)
        if e.op in ACQUIRE:
            owned[k] = owned.get(k, 0) + 1
        elif e.op in RELEASE or e.op == "STEAL":
            if owned.get(k, 0) <= 0:
                prev = last.get(k)
                verb = "gave away" if e.op == "STEAL" else "released"
                if prev is not None and prev.op == "BORROW":
                    return (e, prev, "premature-free",
                            "%s a borrowed reference (%s): a borrowed reference is not "
                            "yours to release" % (verb, prev.how()))
                if prev is not None and prev.op == "STEAL":
                    return (e, prev, "double-release",
                            "%s a reference that was already stolen (%s): after a call "
                            "steals a reference the caller no longer owns it" %
                            (verb, prev.how()))
                if prev is not None and prev.op in RELEASE:
                    return (e, prev, "double-release",
                            "%s a reference twice: it was already released (%s)" %
                            (verb, prev.how()))
                if prev is None and singleton:
                    return (e, None, "double-release",
                            "%s a reference to a singleton it never acquired: %s "
                            "comes from a global, so using it borrows it" %
                            (verb, singleton))
            else:
                owned[k] -= 1
        last[k] = e
    return None


def analyze(events, state="live", singleton=None, target_minor=None, use_site=None):
    """Verdict for one object's events (oldest first).

    state: 'live', 'freed' or 'not an object' (what the object's memory says now).
    singleton: None, or its name ('None', 'True', 'False') when the object is one.
    target_minor: the interpreter's minor version (10..13), for version-aware wording.
    use_site: an Event (op 'USE') for where traced code was when the process crashed; it
        is the use of a dangling pointer when the object's last lifetime ended before it.
    """
    v = Verdict(kind="unknown", summary="", ledger=ledger(events))
    if not events:
        v.missing.append("no transition of this object is in the ring (untraced code, or "
                         "the ring wrapped past it)")
        v.summary = "no recorded history"
        return v
    lives = lifetimes(events)
    immortal = any(e.immortal for e in events)

    # 1. A release without ownership, in the last lifetime that ended, else the current one.
    for life in reversed(lives):
        found = unowned_release(life, singleton)
        if found:
            culprit, origin, kind, why = found
            v.kind, v.culprit, v.origin, v.why = kind, culprit, origin, why
            v.freed_at = end_of(life)
            v.summary = "%s at %s %s" % (culprit.op, culprit.where(), why)
            break

    # 2. Use after free: a traced operation on the address after a lifetime ended, where
    #    the using function's last event before the free was an acquisition or a borrow.
    if v.culprit is None and len(lives) > 1:
        for i, life in enumerate(lives[:-1]):
            end = end_of(life)
            later = [e for e in lives[i + 1] if e.file is not None]
            if not later:
                continue
            use = later[0]
            if use.op in ("NEW",):   # a fresh object at a reused address: a new lifetime
                continue
            before = [e for e in life if owner_key(e) == owner_key(use) and
                      e.op in ("BORROW", "NEW", "INCREF")]
            origin = before[-1] if before else None
            v.kind, v.culprit, v.origin, v.freed_at = "use-after-free", use, origin, end
            v.why = ("used a pointer after the object was freed (%s)%s" %
                     (end.where() if end.file else "inside CPython",
                      "; it was " + origin.how() if origin else ""))
            v.summary = "%s at %s %s" % (use.op, use.where(), v.why)
            break

    # 3. Use after free at the crash: the object's last lifetime ended (or its memory is
    #    freed) and traced code was using it when the process died.
    ended = lives[-1][-1].op in ENDS_LIFE
    if v.culprit is None and use_site is not None and (ended or state == "freed"):
        life = lives[-1] if ended else lives[-2] if len(lives) > 1 else lives[-1]
        end = end_of(life)
        mine = [e for e in life if e.op in ("BORROW", "NEW", "INCREF") and
                owner_key(e) == owner_key(use_site)]
        anyb = [e for e in life if e.op == "BORROW"]
        origin = (mine or anyb or [None])[-1]
        v.kind, v.culprit, v.origin, v.freed_at = "use-after-free", use_site, origin, end
        v.why = ("used the object after it was freed (%s)%s" %
                 (end.where() if end else "where is not recorded",
                  "; the pointer was " + origin.how() if origin else ""))
        v.summary = "%s %s" % (use_site.where(), v.why)

    if v.culprit is None:
        ends = [end_of(life) for life in lives if end_of(life) is not None]
        if state == "freed" or ends:
            v.freed_at = ends[-1] if ends else None
            v.summary = ("the object was freed %s, but every recorded release was owned" %
                         (v.freed_at.where() if v.freed_at else "(no record of where)"))
            v.missing.append("the reference that was wrongly released was not released by "
                             "traced code, or its acquisition was not recorded (an unwrapped "
                             "C-API call, untraced code, or the ring wrapped)")
        else:
            v.kind = "not-a-refcount-bug" if state == "live" else "unknown"
            v.summary = "every recorded release was owned; the object is %s" % state

    if immortal or singleton:
        if target_minor is not None and target_minor >= 12 and v.culprit is not None:
            v.version_note = ("harmless here: the object is immortal on 3.%d, so its count "
                              "never reaches zero; on 3.11 and earlier the same code "
                              "crashes" % target_minor)
        elif target_minor is not None and target_minor <= 11 and v.culprit is not None:
            v.version_note = ("a real bug on 3.%d; 3.12+ makes %s immortal and would hide "
                              "it" % (target_minor, singleton or "this object"))
    return v
