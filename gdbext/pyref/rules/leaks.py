"""The leak analysis of `pyref leaks` (and the ring half of `pyref owners`' account): which
references traced C code acquired (NEW, INCREF) and never released in an object's current
lifetime, for objects alive now, grouped by acquiring site and the object's type, capped
per object by its reference count, and split into leaked and held when holders found in
memory account for some of them. Facts in (Events, counts, holders found), findings out;
no gdb here.

A whole ring is read as columns (unbalanced()): Events are built only for the objects it
leaves unbalanced, a handful among the million records of a full ring.
"""
import sys
from itertools import accumulate, compress, islice, repeat, zip_longest
from operator import add, and_, ge, lshift, ne, or_, rshift

from pyref.errors import PyrefError
from pyref.reader import ringformat
from pyref.rules.events import ACQUIRE, RELEASE, current_lifetime, owner_key
from pyref.rules.marks import by_test

MAX_LEAK_SCAN = 2048       # objects whose holders one `pyref leaks` searches memory for
# A count no object reaches by its references: CPython's static objects on 3.11 and
# earlier (small ints, one-character strings, the empty tuple and bytes start at
# 999999999) and immortal ones; their references are counted apart, like singletons'.
NEAR_IMMORTAL = 1 << 28


def unreleased(events):
    """The acquisitions (NEW, INCREF) of the object's current lifetime that no later
    release (DECREF, DEALLOC) or steal of traced code matched, oldest first. A release is
    matched with the most recent unmatched acquisition of the same function, else of any
    function (a reference handed from one function to another); a release with nothing to
    match gave back a reference pyref did not see taken. Immortal transitions (3.12+) are
    not references and are skipped; so are the runtime's own records."""
    stack = []
    for e in current_lifetime(events):
        if e.file is None or e.immortal:
            continue
        if e.op in ACQUIRE:
            stack.append(e)
        elif (e.op in RELEASE or e.op == "STEAL") and stack:
            for i in range(len(stack) - 1, -1, -1):
                if owner_key(stack[i]) == owner_key(e):
                    del stack[i]
                    break
            else:
                stack.pop()
    return stack


# What a raw record does to the list unreleased() keeps, in two steps at C speed. The op
# byte (decode's op | flags) gives its effect: 0 nothing, 1 an acquisition, 2 a release
# or steal, 3 the end of a lifetime, 4 a NEW, which starts a fresh object when its count
# is 1. Then effect | site-unresolved << 3 | count-is-1 << 4 gives the step: 0 nothing,
# 1 acquire, 2 release, 3 reset, 4 reset then acquire.
def _raw_effect(b):
    op = b & ringformat.OP_MASK
    if op in (ringformat.DEALLOC, ringformat.FREE):
        return 3
    if b & ringformat.IMMORTAL:
        return 0
    return {ringformat.NEW: 4, ringformat.INCREF: 1, ringformat.DECREF: 2,
            ringformat.STEAL: 2}.get(op, 0)


def _step(i):
    effect, bad, one = i & 7, i >> 3 & 1, i >> 4 & 1
    if effect == 3:
        return 3
    if effect == 4:
        return (4 if not bad else 3) if one else (1 if not bad else 0)
    return 0 if bad else effect


_RAW_EFFECT = bytes(_raw_effect(b) for b in range(256))
RAW_EFFECT = _RAW_EFFECT   # public: commands/leaks.py gathers only these records
_NEEDS_SITE = bytes(1 if e in (1, 2, 4) else 0 for e in range(256))
_STEP = bytes(_step(i) for i in range(256))
_IS_ONE = (1).__eq__


def unbalanced(columns, site_ok):
    """The objects whose unreleased() is not empty (unbalanced_counts())."""
    return set(unbalanced_counts(columns, site_ok))


_IS_RESET = bytes(1 if i in (3, 4) else 0 for i in range(256))   # steps 3 and 4
_BEFORE_ALL = -1             # an order below every record's (merge keys are >= 0)
_STEP_VALUE = bytes([0, 1, 0xFF, 0, 1] + [0] * 251)   # step -> its change, as int8
# step | site-unresolved << 3 -> the step: unreleased() skips a record whose site does
# not resolve, but a NEW that started a lifetime still ends the one before
_UNRESOLVED = bytes(i if i < 8 else (3 if i & 7 in (3, 4) else 0) for i in range(256))
_NONZERO_1 = bytes([0] + [1] * 255)
_ZERO_IS_ONE = bytes([1] + [0] * 255)
_LITTLE = sys.byteorder == "little"


def unbalanced_counts(columns, site_ok):
    """{obj: len(unreleased(its Events))} of the objects for which that is not 0, found on
    the raw ring without an Event per record: a whole-ring pass only needs to know which
    objects to look at closely (and how many references a static object's records
    leave). `columns`: [(obj, site, refcnt, opbyte, seq)] one tuple of sequences per run
    of one thread's records in its order, seq not decreasing, threads and rings in order
    (decode.Ring.slot_columns(), or reader/columnar.leak_columns(): memoryviews, op byte
    0 for the slots left out); `site_ok(site)`: whether the site address resolves to a C
    line (unreleased() skips the records whose site does not).

    The count follows unreleased() exactly, in the ring's order (seq, then ring, thread,
    position): acquisitions minus releases would not do, since a release with nothing to
    match is ignored and so order matters. But only what follows an object's last reset
    (the end of a lifetime, or a NEW that starts one) can leave a reference: each run's
    records before it are dropped column-wise, and only the rest, a few per live object,
    are ordered and counted one by one."""
    runs = []
    rob, rord = [], []           # every reset: obj, order (seq << 32 | slot number)
    base = 0
    for o, s, r, opb, q in columns:
        n = len(opb)
        at, base = base, base + n
        effect = opb.translate(_RAW_EFFECT)
        if effect.count(0) == n:
            continue
        flags = _lanes(effect)
        if 4 in effect:          # a NEW: whether its count is 1
            flags |= _lanes(_is_one(r, n)) << 4
        # the steps if every site resolves: one that does not only turns a reset into
        # the other kind, and what follows the object's last reset is checked below
        steps = flags.to_bytes(n, "little").translate(_STEP)
        runs.append((o, s, q, steps, at))
        resets = steps.translate(_IS_RESET)
        idx = list(compress(range(n), resets))
        rob += compress(o, resets)
        rord += _orders(q, idx, at)
    # each object's last reset: the reset orders sorted, the dict keeps the last
    by = sorted(range(len(rord)), key=rord.__getitem__)
    last = dict(zip(map(rob.__getitem__, by), map(rord.__getitem__, by)))
    del rob, rord, by
    last_seq = {k: v >> 32 for k, v in last.items()}
    resolved = {}                # site -> it resolves
    packed = []                  # obj << 128 | order << 3 | step
    for o, s, q, steps, at in runs:
        nz = steps.translate(_NONZERO_1)
        # the records from the seq of the object's last reset on (ties: exact below);
        # no list of the run's objects: only the kept ones are taken, by position
        keep = bytes(map(ge, compress(q, nz), map(last_seq.get, compress(o, nz),
                                                  repeat(_BEFORE_ALL))))
        if not keep.count(1):
            continue
        idx = list(compress(compress(range(len(steps)), nz), keep))
        ob = list(map(o.__getitem__, idx))
        od = list(_orders(q, idx, at))
        keep = bytes(map(ge, od, map(last.get, ob, repeat(_BEFORE_ALL))))
        if keep.count(1) != len(keep):
            ob, od, idx = (list(compress(c, keep)) for c in (ob, od, idx))
        st = bytes(map(steps.__getitem__, idx))
        sites = list(map(s.__getitem__, idx))
        for x in set(sites).difference(resolved):
            resolved[x] = bool(x and site_ok(x))
        ok = bytes(map(resolved.__getitem__, sites))
        if ok.count(0):
            m = len(st)
            st = (_lanes(st) | (_lanes(ok) ^ _lanes(b"\x01" * m)) << 3).to_bytes(
                m, "little").translate(_UNRESOLVED)
            ob, od, st = list(compress(ob, st)), list(compress(od, st)), bytes(
                compress(st, st))
        packed += map(or_, map(lshift, ob, repeat(128)),
                      map(or_, map(lshift, od, repeat(3)), st))
    packed.sort()
    # Each object's records now start at its last reset, if any: what it holds is the
    # floored walk's end, max(0, the largest sum of a suffix of its +1/-1 steps), with a
    # NEW's reset counting +1 and an end 0. Suffix sums of the whole list at C speed,
    # then one max per object.
    m = len(packed)
    objs = list(map(rshift, packed, repeat(128)))
    vals = memoryview(bytes(map(and_, packed, repeat(7))).translate(_STEP_VALUE)).cast("b")
    suffix = list(accumulate(reversed(vals)))
    suffix.reverse()
    suffix.append(0)
    starts = [0]
    starts += compress(range(1, m), map(ne, islice(objs, 1, None), objs))
    starts.append(m)
    out = {}
    for a, b in zip(starts, islice(starts, 1, None)):
        k = max(suffix[a:b]) - suffix[b] if b > a else 0
        if k > 0:
            out[objs[a]] = k
    return out


def _lanes(b):
    return int.from_bytes(b, "little")


def _orders(q, idx, at):
    """The ring-order key (merge key << 32 | slot number) of the slots `idx` of a run
    whose first slot is slot number `at` of the whole pass."""
    return map(or_, map(lshift, map(q.__getitem__, idx), repeat(32)),
               map(add, idx, repeat(at)))


def _is_one(r, n):
    """One byte a record, 1 where the count `r[i]` is 1: from the bytes of an int64
    memoryview on a little-endian host (no int per record), else item by item."""
    if _LITTLE and isinstance(r, memoryview) and r.itemsize == 8:
        b = r.tobytes()
        acc = _lanes(b[0::8]) ^ _lanes(b"\x01" * n)
        for k in range(1, 8):
            acc |= _lanes(b[k::8])
        return acc.to_bytes(n, "little").translate(_ZERO_IS_ONE)
    return bytes(map(_IS_ONE, r))


# Records (of any object) between two acquisitions of one function that still count as
# one call of it.
RUN_GAP = 64


def _runs(held):
    """{id(event): run length}: the unreleased acquisitions cut into runs of one
    function's acquisitions close together in the ring (a call that took several
    references to the object)."""
    out = {}
    i = 0
    while i < len(held):
        j = i
        while j + 1 < len(held) and held[j + 1].func == held[i].func and \
                0 <= held[j + 1].seq - held[j].seq <= RUN_GAP:
            j += 1
        for k in range(i, j + 1):
            out[id(held[k])] = j - i + 1
        i = j + 1
    return out


def leak_order(held):
    """The unreleased acquisitions, most likely leaked first. A reference returned to the
    caller leaves no record (the caller releases it, or keeps it, where pyref does not
    see), so a call's single acquisition is most likely its return value; a call that took
    two references to one object can hand out only one, and the one the code chose to
    take — an INCREF, rather than a NEW the call it made returned — is the likelier leak.
    Ties: the most recent first."""
    runs = _runs(held)

    def rank(ie):
        i, e = ie
        n = runs.get(id(e), 1)
        return (0 if n > 1 and e.op == "INCREF" else 1 if n > 1 else 2, -i)
    return [e for _, e in sorted(enumerate(held), key=rank)]


def account(held, count, found=0):
    """(leaked, accounted): an object's unreleased acquisitions (oldest first) split by
    what the object's state says. `count`, its reference count now, caps what can have
    leaked (True: unknown, no cap); `found`, the references that holders found in memory
    account for, are not leaks: of the acquisitions the count leaves, `count - found` are
    leaked — the likeliest by leak_order() — and the others are accounted for by those
    holders. Both lists keep the ring's order."""
    if count is True:
        return list(held), []
    n = min(len(held), max(0, count))
    k = min(n, max(0, count - found))
    order = leak_order(held)
    leaked, acc = order[:k], order[k:n]
    pos = {id(e): i for i, e in enumerate(held)}
    return sorted(leaked, key=lambda e: pos[id(e)]), sorted(acc, key=lambda e: pos[id(e)])


def ambiguous(held, count, found=0):
    """The unreleased acquisitions account() left out (neither leaked nor accounted for):
    the leaked reference may be any of the object's unreleased ones when there are more of
    them than its count leaves (the others were returned and released unseen)."""
    if count is True:
        return []
    leaked, acc = account(held, count, found)
    chosen = {id(e) for e in leaked + acc}
    return [e for e in held if id(e) not in chosen] if leaked else []


def leak_groups(events_by_obj, alive, found=None, leaked_events=None, static=None,
                maybe=None):
    """(leaked, accounted): unreleased acquisitions grouped by acquiring site,
    {(file, line, func, api): [obj, ...]} with one entry per reference. `alive(obj)` says
    whether the object is still alive: falsy for a dead one (it leaked nothing); an int
    is its reference count now, True when the count is unknown; a count of NEAR_IMMORTAL
    or more is a static object's (its references are tallied in `static`, {obj: n}, when
    given). `found(obj)`, when given, is the number of references holders found in memory
    account for (see account()). `leaked_events`, a list, gets a (site, Event) pair per
    leaked reference; `maybe`, when given, receives {site: [obj]} of the acquisitions a
    leaked reference may equally be (ambiguous())."""
    leaked, accounted = {}, {}
    for obj, events in events_by_obj.items():
        held = unreleased(events)
        if not held:
            continue
        count = alive(obj)
        if count is None or count is False or (count is not True and count <= 0):
            continue
        if count is not True and count >= NEAR_IMMORTAL:
            if static is not None:
                static[obj] = len(held)
            continue
        n_found = (found(obj) or 0) if found else 0
        mine, theirs = account(held, count, n_found)
        if leaked_events is not None:
            leaked_events += [((e.file, e.line, e.func, e.api), e) for e in mine]
        for out, evs in ((leaked, mine), (accounted, theirs)):
            for e in evs:
                out.setdefault((e.file, e.line, e.func, e.api), []).append(obj)
        if maybe is not None:
            for e in ambiguous(held, count, n_found):
                maybe.setdefault((e.file, e.line, e.func, e.api), []).append(obj)
    return leaked, accounted


def leaks(events_by_obj, alive):
    """The leaked half of leak_groups(), from the ring alone."""
    return leak_groups(events_by_obj, alive)[0]


# ---------------------------------------------------------------------------------------
# Where a leaked reference was lost
# ---------------------------------------------------------------------------------------
LOST_SCAN = 512            # records after an acquisition read to find where it was lost


def lost_path(acq, later):
    """Where the ring last shows the acquiring function after a leaked acquisition: a
    dict {file, line, function, note} or None. `later` is the Sites (None for a record
    whose site does not resolve) of the records the same thread wrote after it, in order,
    bounded. The function's records of other objects say which path it took (an error
    label's cleanup, the loop body); the same line acquiring again means the loop went
    round, or the function was called again, with the reference unreleased."""
    last = None
    for site in later:
        if site is None or site.func != acq.func or site.file != acq.file:
            continue
        if site.line == acq.line:
            where = ("after line %d, its last record before that" % last.line
                     if last is not None else "before any other record of %s" % acq.func)
            return {"file": acq.file, "line": last.line if last else None,
                    "function": acq.func,
                    "note": "line %d ran again (the loop's next turn, or the next call of "
                            "%s) with the reference unreleased: lost %s (a `continue`, "
                            "`break`, return or overwrite that skips the release)" % (
                                acq.line, acq.func, where)}
        last = site
    if last is None:
        return {"file": acq.file, "line": None, "function": acq.func,
                "note": "no later record of %s: lost before its next transition (a "
                        "return or a jump past the release)" % acq.func}
    return {"file": last.file, "line": last.line, "function": acq.func,
            "note": "%s's last record after it is at line %d: the path through there "
                    "(an error return, an early exit) left it unreleased" % (
                        acq.func, last.line)}


# ---------------------------------------------------------------------------------------
# Ring coverage
# ---------------------------------------------------------------------------------------
def ring_coverage(rings):
    """One line on how much history the rings (decode.Ring) hold, or None when none
    wrapped."""
    if not any(r.overwritten for r in rings):
        return None
    kept = sum(r.decoded for r in rings)
    lost = sum(r.overwritten for r in rings)
    first = min((r.first_seq for r in rings if r.first_seq is not None), default=None)
    last = max((r.last_seq for r in rings if r.last_seq is not None), default=None)
    span = " (sequence %d..%d)" % (first, last) if first is not None else ""
    return ("the ring wrapped: it holds the last %d of %d transitions%s; references "
            "acquired before that are not seen, and releases of them are ignored" %
            (kept, kept + lost, span))


# ---------------------------------------------------------------------------------------
# The report of pyref leaks
# ---------------------------------------------------------------------------------------
def module_init(func):
    return bool(func) and func.startswith("PyInit_")


def scan_order(groups, limit):
    """At most `limit` objects of `groups` ({site: [obj]}), taken from each site in turn,
    biggest groups first: every site gets answers even when one has thousands of
    objects."""
    queues = [list(dict.fromkeys(objs)) for _, objs in
              sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0][0] or "",
                                                     kv[0][1] or 0))]
    taken = dict.fromkeys(o for row in zip_longest(*queues) for o in row if o is not None)
    return list(islice(taken, limit))


def report(events_by_obj, alive, type_name, singletons, rings, problems=(), holders=None,
           top=20, search=MAX_LEAK_SCAN, marks=None, minor=None, static=None):
    """The data of `pyref leaks` as a dict (its JSON).

    events_by_obj: {obj: [Event]} of the candidates (unbalanced() found them);
    alive(obj): the object's reference count now, None when it is dead, immortal or a
        singleton, True when unknown; type_name(obj): its type's name (for the groups);
    singletons: {addr: name} of None, True, False...: their references are counted apart;
    rings: the decode.Rings read (coverage, records examined); problems: notes so far;
    holders(objs, problems): ({obj: references found}, {obj: a holder's description},
        scan summary) from one search of memory, or PyrefError when it cannot search;
    top: groups shown; search: for how many objects at most to look for holders (0:
        none, the ring alone decides);
    marks: the rings' MARK records (decode.Ring.marks()): the leaks by test (rules/marks.py);
    minor: the interpreter's minor version (on 3.11 and earlier the singletons' references
        are real ones: they are listed by site);
    static: {obj: unreleased references} of static objects left out of events_by_obj
        (unbalanced_counts() counted them: they are only tallied).
    """
    problems = list(problems)
    leaked_events = []
    static, maybe = dict(static or {}), {}
    leaked, accounted = leak_groups(events_by_obj, alive, None, leaked_events,
                                    static=static)
    scan_info, searched, example = None, set(), {}
    if search:
        suspects = {k: v for k, v in leaked.items() if not module_init(k[2])}
        objs = scan_order(suspects, search)
        scan_info = {"candidates": len({o for v in suspects.values() for o in v}),
                     "searched": 0, "limit": search, "bytes": 0, "passes": 0,
                     "seconds": 0.0, "text": None}
        if objs:
            try:
                found, example, summary = holders(objs, problems)
            except PyrefError as e:   # the ring's answer still stands
                problems.append("memory not searched for holders: %s" % e)
            else:
                searched = set(objs)
                scan_info.update(summary, searched=len(objs))
                leaked_events = []
                leaked, accounted = leak_groups(events_by_obj, alive, found.get,
                                                leaked_events, maybe=maybe)
    skipped, singleton_sites = {}, []
    for obj, name in singletons.items():
        evs = events_by_obj.get(obj)
        if evs:
            held = unreleased(evs)
            if held:
                skipped[name] = len(held)
            sites = {}
            for e in held:
                k = (e.file, e.line, e.func, e.api)
                sites[k] = sites.get(k, 0) + 1
            for (f, ln, fn, api), n in sorted(sites.items(), key=lambda kv: -kv[1]):
                singleton_sites.append({"object": name, "file": f, "line": ln,
                                        "function": fn, "api": api, "count": n})
    if minor is not None and minor >= 12:
        singleton_note = ("None, True, False and the other singletons are immortal on "
                          "3.%d: a reference to one cannot leak" % minor)
        singleton_sites = []
    else:
        singleton_note = ("references to singletons are real on 3.11 and earlier: one "
                          "handed to a caller (Py_RETURN_NONE) is released there, unseen; "
                          "one never released (a leaked call result that is None) is a "
                          "leak the sites below may hold" if singleton_sites else None)
    handed = {}

    def rows_of(groups, examples=None):
        rows = {}
        for (file_, line, func, api), objs in groups.items():
            if module_init(func):   # returned to the import system, held or not
                handed[func] = handed.get(func, 0) + len(objs)
                continue
            for obj in objs:
                key = (file_, line, func, api, type_name(obj))
                row = rows.setdefault(key, {"count": 0, "objects": set()})
                row["count"] += 1
                row["objects"].add(obj)
        ordered = sorted(rows.items(), key=lambda kv: (-kv[1]["count"], kv[0][0] or "",
                                                       kv[0][1] or 0))
        out = []
        for k, r in ordered[:top]:
            g = {"file": k[0], "line": k[1], "function": k[2], "api": k[3], "type": k[4],
                 "count": r["count"], "objects": len(r["objects"])}
            if search:
                g["searched"] = len(r["objects"] & searched)
            ex = min(r["objects"] & searched or r["objects"])   # a checked one if any
            g["example"] = "0x%x" % ex
            if examples is not None:
                g["holder"] = examples.get(ex)
            out.append(g)
        return {"total": sum(r["count"] for _, r in ordered), "sites": len(ordered),
                "groups": out, "more_groups": max(0, len(ordered) - top)}

    lk = rows_of(leaked)
    held = rows_of(accounted, example) if search else None
    before = dict(handed)             # the ambiguous rows are the same references again
    also = rows_of(maybe)
    handed.clear()
    handed.update(before)
    return {
        "total": lk["total"], "sites": lk["sites"], "groups": lk["groups"],
        "more_groups": lk["more_groups"],
        "held": held,
        "scan": scan_info,
        "singletons": skipped,
        "singleton_sites": singleton_sites[:top],
        "singleton_note": singleton_note,
        "static": {"objects": len(static), "references": sum(static.values())},
        "ambiguous": also["groups"],
        "module_init": handed,
        "coverage": ring_coverage(rings),
        "records": sum(r.decoded for r in rings),
        "problems": problems,
        "tests": by_test(marks, [(k, e) for k, e in leaked_events if not module_init(k[2])],
                         any(r.overwritten for r in rings))}
