"""From an object's recorded transitions to a verdict: which line of C released a reference
too many, released it too early, or used a pointer after the object was freed. No gdb
here: the input is a list of Event (one per ring record, sites already resolved) and what
is known of the object now; the output is a Verdict. `pyref why` and `pyref-postmortem`
print it.

Ownership is counted per object, not per C function: a reference acquired by traced code
(NEW, INCREF) belongs to the program until traced code releases it (DECREF, DEALLOC) or
gives it away (STEAL), wherever that happens — the most common life of a reference is an
INCREF and a store into a struct field in tp_new, and its release in tp_clear or
tp_dealloc. An unbalanced ledger is no evidence: references come from code pyref does not
see, and leave through it.

A verdict that names a culprit needs *harm*:
- the object was freed (DEALLOC, or FREE from the allocator hook) and then used: a later
  record on the address, the crash in traced code, or a crash whose frames hold it;
- it was freed by the release of a pointer its releaser only borrowed or had given away
  (BORROW, STEAL): the lender or the new owner still holds it;
- its count went negative, or a singleton's reached zero;
- CPython itself says so (rules/cpython.py: "refcount is too small", a negative count).
Without harm the verdict is `not-a-refcount-bug` (live) or `unknown`, and what looks odd
is listed as a suspicion, never as a culprit.

With harm, the culprit, in this order:
1. a release by a function whose own last event on the object was a BORROW or a STEAL
   (premature-free / double-release: the pointer was not its to release);
2. a DEALLOC by traced code: a double release when the program's releases of the object
   outnumber its acquisitions there (the release that went past them), else a premature
   release when the function that freed it used it afterwards ("move the DECREF after the
   last use");
3. a use after the free by code that held no reference: the use, else the borrow of the
   pointer (where an INCREF keeps it alive);
4. freed inside CPython while traced code still held a reference it acquired: the
   reference that went missing is not in the ring (a borrowed return such as `return
   self->field;`, an unrecorded steal) — no culprit, and the verdict says so.

Version awareness: on 3.12+ immortal objects are never freed, so an unmatched release of
an immortal object is "harmless here, a crash on 3.11 and earlier"; on 3.11 and earlier
the same release is a real bug that 3.12+ would hide.
"""
from dataclasses import dataclass, field

from pyref.rules import capi, handout
from pyref.rules.events import ACQUIRE, RELEASE, Event, end_of, lifetimes, owner_key

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

# A count read from freed memory: the debug allocator's 0xDD fill, or garbage.
SANE_COUNT = 1 << 40


@dataclass
class Verdict:
    kind: str                    # premature-free double-release use-after-free
                                 # not-a-refcount-bug unknown
    summary: str                 # one sentence
    culprit: Event = None
    origin: Event = None
    freed_at: Event = None
    used_at: Event = None        # the use that shows the harm, when there is one
    why: str = ""                # the rule that was broken
    harm: str = ""               # the evidence of harm the verdict rests on
    missing: list = field(default_factory=list)   # evidence we do not have
    suspect: list = field(default_factory=list)   # odd records that did no harm seen
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
    """[(Event, note)]: each event with what it did to the program's account of the
    object (the references traced code acquired and has not released or given away, in
    the object's lifetime; references from unseen code are not in it)."""
    out = []
    for life in lifetimes(events):
        held = 0
        for e in life:
            note = ""
            if e.file is not None and not e.immortal:
                if e.op in ACQUIRE:
                    held += 1
                    note = "program holds %d" % held
                elif e.op in RELEASE or e.op == "STEAL":
                    held -= 1
                    note = ("program holds %d" % held if held >= 0 else
                            "program holds %d (released one it was not seen to acquire)"
                            % held)
                    held = max(held, 0)
                elif e.op == "BORROW":
                    note = "%s borrows" % e.func
            rule = api_rule(e)
            if rule:
                note = (note + "; " if note else "") + rule
            out.append((e, note))
    return out


def unowned_release(life, singleton=None):
    """The first release or steal in one lifetime's events by a function whose own last
    event on the object says the pointer was not its to release: a BORROW (it borrowed),
    a STEAL (it gave the reference away), a release (it released it already) with nothing
    acquired between; for a singleton, any release by a function that never acquired it
    (its pointer comes from a global). (culprit, origin, kind, why), or None. This is
    suspicion only: the verdict names it when there is harm (analyze())."""
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


def over_release(life):
    """The first release (DECREF, DEALLOC, STEAL) of traced code in a lifetime that took
    the program's account of the object below zero — it released more than traced code
    acquired — or None. Only when traced code is first seen acquiring or borrowing the
    object: a lifetime whose first traced record is a release began with a reference the
    ring did not see taken."""
    traced = [e for e in life if e.file is not None and not e.immortal]
    if not traced or traced[0].op in RELEASE or traced[0].op == "STEAL":
        return None
    return first_overdraft(traced)


def first_overdraft(events):
    """The first release or steal of traced code in `events` that takes the count of
    traced acquisitions less releases below zero, or None."""
    held = 0
    for e in events:
        if e.file is None:
            continue
        if e.op in ACQUIRE:
            held += 1
        elif e.op in RELEASE or e.op == "STEAL":
            held -= 1
            if held < 0:
                return e
    return None


def held_at_end(life):
    """The program's acquisitions of a lifetime that no traced release or steal matched
    before it ended ([Event], oldest first)."""
    stack = []
    for e in life:
        if e.file is None or e.immortal:
            continue
        if e.op in ACQUIRE:
            stack.append(e)
        elif (e.op in RELEASE or e.op == "STEAL") and stack:
            stack.pop()
    return stack


def poisoned(e):
    """Whether a record's count says the memory it was read from is dead: zero or below
    before the transition (a freed object's count, or the release build's 0 after its
    deallocation), or a count no live object has (the debug allocator's 0xDD fill)."""
    return not (0 < e.before < SANE_COUNT)


def later_use(life, nxt):
    """The first record of traced code in the next lifetime `nxt` that uses the dead
    object of `life`, or None: one whose count was read from dead memory. A record with a
    sane count at the address is another object that took the memory (pymalloc reuses a
    freed block at once), whoever writes it."""
    for e in nxt:
        if e.file is None:
            continue
        return e if poisoned(e) and e.op != "NEW" else None
    return None


def _name(e):
    return e.where() if e is not None and e.file else "inside CPython"


def singleton_over_release(events):
    """The first release by traced code of a singleton that took the program's account of
    it below zero — traced code released it more times than it acquired it — or None.
    Counted over the whole ring (a singleton lives as long as the interpreter), immortal
    transitions included (on 3.12+ each is still the code's release); only meaningful
    when the ring holds everything since recording began."""
    return first_overdraft(events)


def analyze(events, state="live", singleton=None, target_minor=None, use_site=None,
            crashed_on=False, cpython=None, complete=False, source=None):
    """Verdict for one object's events (oldest first).

    state: 'live', 'freed' or 'not an object' (what the object's memory says now).
    singleton: None, or its name ('None', 'True', 'False') when the object is one.
    target_minor: the interpreter's minor version (10..15), for version-aware wording.
    use_site: an Event (op 'USE') for where traced code was when the process crashed; it
        is the use of a dangling pointer when the object's last lifetime ended before it.
    crashed_on: the process crashed with this object, dead, among its crashing frames'
        pointers (a use of it, even if not in traced code).
    cpython: rules/cpython.Evidence CPython's own checks left about this object, or None.
    complete: the ring holds every record since recording began (it never wrapped): a
        singleton released more times than traced code acquired it is then a culprit.
    source: the traced C source (rules/handout.py), or None: where the ring shows harm
        and a hole, the statement that handed a reference out without a record.
    """
    v = Verdict(kind="unknown", summary="", ledger=ledger(events))
    if cpython is not None:
        # CPython's word is harm: the object's own history says which release did it,
        # else the evidence alone (rules/cpython.py)
        first = analyze(events, state, singleton, target_minor, use_site, True,
                        complete=complete, source=source)
        if first.culprit is not None:
            first.harm = "CPython: %s; %s" % (cpython.text, first.harm)
            return first
        from pyref.rules import cpython as cpy
        if cpy.apply(v, events, cpython, singleton, source):
            _version_note(v, events, singleton, target_minor)
            return v
    if not events:
        v.missing.append("no transition of this object is in the ring (untraced code, or "
                         "the ring wrapped past it)")
        v.summary = "no recorded history"
        return v
    if singleton:
        # a singleton is never freed for good: its count reaching zero is the harm
        # (CPython's none_dealloc aborts), whatever lifetimes the DEALLOC seems to end
        _judge_running(v, events, singleton)
        extra = singleton_over_release(events) if complete and v.culprit is None else None
        if extra is not None:
            v.kind, v.culprit = "double-release", extra
            v.harm = ("traced code released %s more times than it acquired it, and the "
                      "ring holds all of its records" % singleton)
            v.why = ("released a reference to %s that traced code never acquired: %s comes "
                     "from a global, so using it borrows it" % (singleton, singleton))
            v.summary = "%s at %s %s" % (extra.op, extra.where(), v.why)
        if v.culprit is not None:
            _version_note(v, events, singleton, target_minor)
            return v
    lives = lifetimes(events)
    ended_now = end_of(lives[-1]) is not None
    dead = ended_now or state == "freed"

    # Harm in a lifetime that ended: freed, then used; or freed by a borrower or a thief.
    for i in range(len(lives) - 1, -1, -1):
        life = lives[i]
        end = end_of(life)
        if end is None and not (i == len(lives) - 1 and state == "freed"):
            continue
        use = later_use(life, lives[i + 1]) if i + 1 < len(lives) else None
        last_dead = (i == len(lives) - 1 and dead) or \
            (i == len(lives) - 2 and state == "freed" and not ended_now and
             not any(e.file is not None for e in lives[-1]))
        if use is None and last_dead and use_site is not None:
            use = use_site
        crash_use = last_dead and crashed_on
        if _judge_ended(v, life, end, use, crash_use, source):
            break

    # Harm in the running lifetime: a count below zero, a singleton released to zero.
    if v.culprit is None and v.harm == "" and not ended_now:
        _judge_running(v, lives[-1], singleton)

    if not v.summary:
        found = None
        for life in reversed(lives):
            found = unowned_release(life, singleton)
            if found:
                v.suspect.append("%s at %s %s" % (found[0].op, found[0].where(), found[3]))
                break
        ends = [end_of(life) for life in lives if end_of(life) is not None]
        if dead:
            v.freed_at = ends[-1] if ends else None
            v.kind = "unknown"
            v.summary = ("the object was freed %s; no use of it after that is recorded, "
                         "nor any other harm" % (_name(v.freed_at) if v.freed_at else
                                                 "(no record of where)"))
        else:
            v.kind = "not-a-refcount-bug" if state == "live" else "unknown"
            v.summary = ("no harm recorded: the object is %s and its count never went "
                         "below zero" % state)
        if found:
            v.summary += ("; a release looks suspicious (below), but nothing shows that it "
                          "did harm")
    _version_note(v, events, singleton, target_minor)
    return v


def _judge_ended(v, life, end, use, crash_use, source=None):
    """Fills `v` when the ended lifetime `life` shows harm; True when it did."""
    found = unowned_release(life, None)
    lender = found is not None and found[2] in ("premature-free", "double-release") and \
        found[1] is not None and found[1].op in ("BORROW", "STEAL") and \
        end is not None and end.file is not None
    if use is None and not crash_use and not lender:
        return False
    v.freed_at = end
    v.used_at = use
    if use is not None:
        v.harm = "the object was freed %s and then used at %s" % (_name(end), use.where())
    elif crash_use:
        v.harm = ("the object was freed %s and the process crashed using it" % _name(end))
    else:
        v.harm = ("the object was freed %s while %s still held it" % (
            _name(end), "the container it was borrowed from" if found[1].op == "BORROW"
            else "the callee that stole it"))
    # 1. the releaser only borrowed the pointer, or had given its reference away
    if found is not None and found[1] is not None:
        culprit, origin, kind, why = found
        if found[1].op in ("BORROW", "STEAL") or over_release(life) is culprit:
            v.kind, v.culprit, v.origin, v.why = kind, culprit, origin, why
            v.summary = "%s at %s %s" % (culprit.op, culprit.where(), why)
            return True
    # 2. traced code freed it
    if end is not None and end.file is not None:
        extra = over_release(life)
        if extra is not None:
            prev = [e for e in life if e.seq < extra.seq and e.file is not None and
                    e.op in RELEASE + ("STEAL",)]
            v.kind, v.culprit = "double-release", extra
            v.origin = prev[-1] if prev else None
            v.why = ("released a reference more than traced code acquired: the object "
                     "was created at %s and %s" % (
                         life[0].where() if life[0].file else "?",
                         "already released at %s" % v.origin.where() if v.origin else
                         "never INCREF'd since"))
            v.summary = "%s at %s %s" % (extra.op, extra.where(), v.why)
            return True
        if use is not None and use.file is not None and owner_key(use) == owner_key(end) \
                and (use.file, use.line) != (end.file, end.line):
            acq = [e for e in life if e.op in ACQUIRE and e.file is not None]
            v.kind, v.culprit = "premature-free", end
            v.origin = acq[-1] if acq else None
            v.why = ("freed by the %s at %s, used at %s: move the %s after the last use" %
                     (end.api or end.op, end.where(), use.where(),
                      end.api if end.api and end.api != end.op else "DECREF"))
            v.summary = "%s at %s: %s" % (end.op, end.where(), v.why)
            return True
    # 3. a use of a pointer that owned nothing
    held = held_at_end(life)
    borrows = [e for e in life if e.op == "BORROW" and e.file is not None]
    if end is not None and end.file is None and held:
        # 4. freed inside CPython while the program held a reference
        v.kind = "premature-free"
        v.origin = held[-1]
        v.summary = ("the object was freed inside CPython although traced code still held "
                     "%d reference%s to it (%s): a reference was released or given away "
                     "where the ring does not show it" % (
                         len(held), "" if len(held) == 1 else "s", held[-1].how()))
        given = handout.find_field_return(source, life, held[-1])
        if given is not None:
            v.culprit, v.why = given
            v.summary = ("the object was freed inside CPython although traced code still "
                         "held a reference to it (%s); RETURN at %s %s" % (
                             held[-1].how(), v.culprit.where(), v.why))
            v.missing.append("the return leaves no record: it was found in the source")
        else:
            v.missing.append("the release that went missing: a borrowed reference returned "
                             "(`return self->field;` without Py_NewRef), or a steal by a "
                             "call pyref does not wrap (PyTuple_SET_ITEM, Py_BuildValue's "
                             "N)")
        if use is not None:
            v.summary += "; used afterwards at %s" % use.where()
        return True
    if use is not None and use.file is not None and use.op in RELEASE + ("STEAL",):
        gone = [e for e in life if e.file is not None and e.op in RELEASE + ("STEAL",)]
        v.kind, v.culprit = "double-release", use
        v.origin = gone[-1] if gone else None
        v.why = ("released the object after it was freed (%s)%s" % (
            _name(end), ": it was " + v.origin.how() + " already" if v.origin else ""))
        v.summary = "%s at %s %s" % (use.op, use.where(), v.why)
        return True
    if use is not None and use.file is not None and borrows and \
            not any(owner_key(e) == owner_key(use) for e in life if e.file is not None) and \
            all(e.op == "BORROW" for e in life if e.file is not None):
        # the using function got the pointer from none of the recorded calls: the
        # borrower kept it (a struct field, a static) without an INCREF
        b = borrows[-1]
        v.kind, v.origin = "use-after-free", b
        v.summary = ("%s used the object after it was freed (%s); the pointer was %s and "
                     "kept, without an INCREF, where %s found it: take a reference "
                     "(Py_NewRef) where %s stores it" % (
                         use.where(), _name(end), b.how(), use.func, b.func))
        kept = handout.find_borrowed_store(source, life, b, use)
        if kept is not None:
            v.culprit, v.why = kept
            v.summary += "; STORE at %s %s" % (v.culprit.where(), v.why)
            v.missing.append("the store leaves no record: it was found in the source")
        else:
            v.missing.append("the store of the borrowed pointer (an assignment, not a "
                             "call) leaves no record")
        return True
    if use is not None and use.file is not None:
        mine = [e for e in borrows if owner_key(e) == owner_key(use)]
        origin = (mine or borrows or [None])[-1]
        v.kind, v.culprit, v.origin = "use-after-free", use, origin
        v.why = ("used the object after it was freed (%s)%s" % (
            _name(end), "; the pointer was " + origin.how() if origin else ""))
        v.summary = "%s %s" % (use.where(), v.why)
        return True
    if borrows:
        b = borrows[-1]
        given = handout.find_borrowed_return(source, life, b)
        if given is not None:
            v.kind, v.origin = "premature-free", b
            v.culprit, v.why = given
            v.summary = "RETURN at %s %s; the object was freed %s" % (
                v.culprit.where(), v.why, _name(end))
            v.missing.append("the return leaves no record: it was found in the source")
            return True
        v.kind, v.culprit, v.origin = "use-after-free", b, b
        v.why = ("the pointer %s was used after the object was freed (%s): INCREF it there "
                 "(Py_NewRef) and release it after its last use" % (b.how(), _name(end)))
        v.summary = "%s: %s" % (b.where(), v.why)
        return True
    v.kind = "unknown"
    v.summary = "%s, but no traced code is seen releasing it wrongly" % v.harm
    v.missing.append("the reference that was wrongly released was not released by traced "
                     "code, or its acquisition was not recorded (an unwrapped C-API call, "
                     "untraced code, or the ring wrapped)")
    return True


def _judge_running(v, life, singleton):
    """Fills `v` when the running lifetime shows harm: a negative count, or a singleton
    whose count reached zero (none_dealloc)."""
    neg = next((e for e in life if e.file is not None and not e.immortal and
                e.op in RELEASE and (e.after < 0 or (singleton and e.after <= 0))), None)
    if neg is None:
        return
    v.harm = "the count went from %d to %d at %s" % (neg.before, neg.after, neg.where())
    found = unowned_release(life, singleton)
    culprit = found[0] if found else neg
    v.kind, v.culprit = "double-release", culprit
    v.origin = found[1] if found else None
    v.why = found[3] if found else "released a reference the object no longer had"
    v.summary = "%s at %s %s" % (culprit.op, culprit.where(), v.why)


def _version_note(v, events, singleton, target_minor):
    immortal = any(e.immortal for e in events)
    if (immortal or singleton) and target_minor is not None and v.culprit is not None:
        if target_minor >= 12:
            v.version_note = ("harmless here: the object is immortal on 3.%d, so its count "
                              "never reaches zero; on 3.11 and earlier the same code "
                              "crashes" % target_minor)
        else:
            v.version_note = ("a real bug on 3.%d; 3.12+ makes %s immortal and would hide "
                              "it" % (target_minor, singleton or "this object"))
