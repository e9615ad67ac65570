"""`pyref leaks`: the references traced C code acquired and never released, by site and type.
The analysis is rules/leaks.py; this module gathers its inputs from the target (the ring's
candidates, each object's count and type, one search of memory for their holders) and
writes the report."""
import json

import gdb

from pyref import commands
from pyref.errors import PyrefError
from pyref.inferior import (diagnose, heapslots, memsearch, objects, pycontext, pythreads,
                            rings, target)
from pyref.inferior import sources
from pyref.reader import columnar, evidence
from pyref.rules import events, leaks, marks
from pyref.rules.leaks import MAX_LEAK_SCAN
from pyref.rules.ownergraph import scan_summary, site_text

DEFAULT_TOP = 20


def _candidates(ringset):
    """{obj: unreleased references} of the objects some reference to which traced code
    acquired and never released in their current lifetime, cached per stop. The ring is
    read as compact columns (reader/columnar.py, leaks.unbalanced_counts): no Record, no
    int object per record."""
    cache = target.stop_cache()
    counts = cache.get("leaks.unbalanced")
    if counts is None:
        counts = cache["leaks.unbalanced"] = leaks.unbalanced_counts(
            # Only the records that move a count unreleased() follows (nonzero raw
            # effect): the others never change its answer, and are most of a ring.
            (c for ring in ringset.rings for c in columnar.leak_columns(ring,
                                                                        leaks.RAW_EFFECT)),
            lambda site: rings.site_of(site) is not None)
    return counts


def _candidate_events(ringset, counts, alive, singletons):
    """({obj: [Event]}, {obj: unreleased references} of the static objects): Events only
    for the candidates a report can show, the singletons and the live objects of a
    mortal count; a dead object leaks nothing, and a static one only adds its count
    (leaks.report's `static`), so neither gets its records decoded."""
    want, static = set(), {}
    for obj, n in counts.items():
        if obj not in singletons:
            count = alive(obj)
            if count is None or count is False or (count is not True and count <= 0):
                continue
            if count is not True and count >= leaks.NEAR_IMMORTAL:
                static[obj] = n
                continue
        want.add(obj)
    return ({obj: events.from_records(recs, rings.site_of)
             for obj, recs in ringset.records_of(want).items()}, static)


def _holders(objs, problems):
    """({obj: references found}, {obj: one holder's description}, scan summary) for the
    objects, from one search of memory for all of them. What counts is what `pyref
    owners` counts, less the heap words of unknown owner: slots of Python objects and
    their buffers, interpreter frames, named C variables, statics. Stale words (freed
    memory, dead stack), possible ones (unnamed stack slots, borrowing caches) and
    unknown heap words (a borrowed copy as likely as an owner) would hide a leak."""
    found, example = {}, {}
    try:
        mem = memsearch.Memory(problems, "pyref leaks")
        owners = memsearch.owners_of(mem, objs)
    except gdb.error as e:
        raise PyrefError(str(e)) from None
    for obj, held in owners.items():
        counted = [o for o in held if o.counted and o.kind != "heap"]
        found[obj] = len(counted)
        if counted:
            example[obj] = counted[0].text
    summary = {"bytes": mem.total, "passes": len(mem.passes),
               "seconds": round(sum(r.seconds for r in mem.passes), 4),
               "text": scan_summary(mem)}
    return found, example, summary


def leak_report(top, search=MAX_LEAK_SCAN):
    """The data of `pyref leaks` as a dict (rules/leaks.py report()). `search`: for how
    many objects at most to look for holders in memory (0: none, the ring alone decides)."""
    ringset = rings.ring_set()
    singletons = {}
    for sym, name in objects.SINGLETON_SYMBOLS.items():
        a = target.symbol_address(sym)
        if a is not None:
            singletons[a] = name
    infos = {}

    def alive(obj):
        if obj in singletons:
            return None
        if obj not in infos:
            infos[obj] = heapslots.live_object(obj)
        info = infos[obj]
        if info is None:
            return None
        rc = info.refcount
        if rc is None or rc.immortal:
            return None
        return rc.total

    def type_name(obj):
        info = infos.get(obj)
        return info.type.name if info is not None else "?"

    evs, static = _candidate_events(ringset, _candidates(ringset), alive, singletons)
    rep = leaks.report(evs, alive, type_name, singletons, ringset.rings,
                       ringset.problems, _holders, top, search,
                       [m for ring in ringset.rings for m in ring.marks()],
                       diagnose.python_minor(), static=static)
    _add_lost_paths(ringset, rep)
    sources.add_dropped_singletons(ringset, rep)
    rep["python_context"] = pycontext.recorded(ringset)
    rep["caveats"] = ringset.caveats.to_json()
    for g in rep["groups"] + (rep["held"]["groups"] if rep["held"] else []):
        g["python"] = pythreads.frame_json(_python_line(ringset, g)) \
            if rep["python_context"] else None
    return rep


def _add_lost_paths(ringset, rep):
    """Each leaked group's `lost`: where the ring last shows the acquiring function after
    the example object's acquisition at the group's site (rules/leaks.lost_path), read
    from the acquiring thread's columns (no full decode)."""
    for g in rep["groups"]:
        obj = int(g["example"], 16)
        recs = [r for r in ringset.records_for(obj)
                if r.op_name in ("NEW", "INCREF") and rings.site_of(r.site) is not None and
                (rings.site_of(r.site).file, rings.site_of(r.site).line) ==
                (g["file"], g["line"])]
        if not recs:
            continue
        acq = events.from_records(recs[-1:], rings.site_of)[0]
        later = columnar.following_sites(ringset.ring_of(recs[-1]), recs[-1],
                                         leaks.LOST_SCAN)
        if later is not None:
            later = [rings.site_of(a) for a in later]
        g["lost"] = leaks.lost_path(acq, later) if later is not None else None


def _python_line(ringset, group):
    """The Python line that ran the group's example acquisition: its example object's last
    record at the group's site."""
    recs = [r for r in ringset.records_for(int(group["example"], 16))
            if r.op_name in ("NEW", "INCREF") and rings.site_of(r.site) is not None and
            (rings.site_of(r.site).file, rings.site_of(r.site).line) ==
            (group["file"], group["line"])]
    return pycontext.python_line(ringset, recs[-1]) if recs else None


def _plural(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


def _group_lines(groups, more, last_column):
    out = ["  %7s  %7s  %-40s %-16s %s" % ("refs", "objects", "site", "type", last_column)]
    for g in groups:
        tail = "e.g. %s" % g["example"]
        if g.get("holder"):
            tail += " in %s" % g["holder"]
        if g.get("searched", g["objects"]) < g["objects"]:
            tail += " (%d not searched in memory)" % (g["objects"] - g["searched"])
        tail += pythreads.json_suffix(g.get("python"))
        out.append("  %7d  %7d  %-40s %-16s %s  %s" % (
            g["count"], g["objects"], site_text(g["file"], g["line"], g["function"]),
            g["type"], g["api"] or "", tail))
        if g.get("lost"):
            out.append("  %7s  %7s  lost: %s" % ("", "", g["lost"]["note"]))
    if more:
        out.append("  ... and %s (--top)" % _plural(more, "more group"))
    return out


def leak_text(rep):
    """The text of `pyref leaks` from leak_report()'s dict."""
    out = []
    held, scan_info = rep["held"], rep["scan"]
    if rep["groups"]:
        out.append("%s at %s (%d records examined):" % (
            _plural(rep["total"], "unreleased reference"), _plural(rep["sites"], "site"),
            rep["records"]))
        out += _group_lines(rep["groups"], rep["more_groups"], "api / example")
    elif evidence.partial(rep["caveats"]):
        out.append(evidence.none_found(rep["caveats"], "leaks", rep["records"]))
    elif held and held["total"]:
        out.append("no leaks: every unreleased reference traced code acquired to a live "
                   "object is accounted for by holders found in memory (%d records "
                   "examined)" % rep["records"])
    else:
        out.append("no leaks: every reference traced code acquired to a live object "
                   "was released (%d records examined)" % rep["records"])
    out += marks.text_lines(rep.get("tests"))
    if held and held["total"]:
        out.append("held, not leaked: %s at %s accounted for by holders found in "
                   "memory:" % (
                       _plural(held["total"], "reference"), _plural(held["sites"], "site")))
        out += _group_lines(held["groups"], held["more_groups"], "api / example holder")
    if rep["module_init"]:
        out.append("not counted: %s (module initialisation returns its references to "
                   "the import system)" % ", ".join(
                       "%d in %s" % (n, f) for f, n in sorted(rep["module_init"].items())))
    if rep.get("ambiguous"):
        out.append("may equally be: the leaked references above may be these unreleased "
                   "acquisitions of the same objects instead (the ring shows more "
                   "acquisitions than the count leaves; the others were returned and "
                   "released unseen):")
        out += _group_lines(rep["ambiguous"], 0, "api / example")
    if rep["singletons"]:
        out.append("not counted: %s (singletons: Py_RETURN_NONE and the like return "
                   "such references)" % ", ".join(
                       "%d to %s" % (n, k) for k, n in sorted(rep["singletons"].items())))
    if rep.get("singleton_sites"):
        out.append("singletons by site: " + rep["singleton_note"])
        out.append("  %7s  %-8s %-40s %s" % ("refs", "object", "site", "api"))
        for g in rep["singleton_sites"]:
            out.append("  %7d  %-8s %-40s %s" % (g["count"], g["object"], site_text(
                g["file"], g["line"], g["function"]), g["api"] or ""))
    elif rep.get("singleton_note") and rep["singletons"]:
        out.append("note: " + rep["singleton_note"])
    if rep.get("static") and rep["static"]["objects"]:
        out.append("not counted: %s to %s (CPython's static objects — small ints, "
                   "one-character strings, the empty tuple — or immortal ones: their "
                   "count is no reference count)" % (
                       _plural(rep["static"]["references"], "reference"),
                       _plural(rep["static"]["objects"], "object")))
    if rep["coverage"]:
        out.append("caveat: " + rep["coverage"])
    out += evidence.lines(rep["caveats"], "\n".join(out))
    if scan_info and scan_info["searched"] < scan_info["candidates"]:
        out.append("note: holders searched for %d of %d objects (--max-search %d); the "
                   "references of the others are listed from the ring alone" % (
                       scan_info["searched"], scan_info["candidates"], scan_info["limit"]))
    for p in rep["problems"]:
        out.append("note: " + p)
    if scan_info and scan_info["text"]:
        out.append("memory: " + scan_info["text"])
    if rep["groups"] and not rep.get("python_context"):
        out.append("python: " + pycontext.HINT)
    return "\n".join(out) + "\n"


class Leaks(commands.Subcommand):
    name = "leaks"
    reports_caveats = True
    summary = "List references traced C code acquired and never released, by site and type."
    details = """\
From the pyref ring: each reference acquired by traced code (NEW, INCREF) in an object's
current lifetime that no later release or steal of traced code matched, for objects still
alive, capped per object by its reference count; grouped by the acquiring line and the
object's type, most first. A leak repeats: the line that leaks once per call heads the
list with a count to match.
A reference returned to the caller (return Py_NewRef(x), return PyLong_FromLong(n)) is
released outside the ring, or kept: memory is searched once for every such object (at
most --max-search, default %d), as `pyref owners` searches it, and the references
that holders found there account for (object and container slots, interpreter frames,
named C variables, statics; not stale words in freed memory or dead stack, nor heap
words of unknown owner) are listed apart as held. What the reference count leaves beyond
them stays a leak. --no-scan skips the search.
Counted apart: immortal objects and the singletons (None, True, False...), whose
references Py_RETURN_NONE and the like hand to the caller, and what a module's PyInit_*
function acquires (it returns it to the import system). When the ring wrapped, only the
history it still holds is seen, and the output says how much.""" % MAX_LEAK_SCAN
    examples = ("pyref leaks", "pyref leaks --top 5", "pyref leaks --no-scan --json")
    completer = gdb.COMPLETE_NONE

    def add_arguments(self, parser):
        parser.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="N",
                            help="show the N biggest groups (default %d)" % DEFAULT_TOP)
        parser.add_argument("--no-scan", action="store_true",
                            help="do not search memory for holders: the ring alone decides")
        parser.add_argument("--max-search", type=int, default=MAX_LEAK_SCAN, metavar="N",
                            help="search memory for the holders of at most N objects "
                                 "(default %d)" % MAX_LEAK_SCAN)
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(self, args, from_tty):
        if args.top <= 0:
            raise PyrefError("--top wants a positive number")
        if args.max_search <= 0:
            raise PyrefError("--max-search wants a positive number (--no-scan: none)")
        target.require_target()
        rep = leak_report(args.top, search=0 if args.no_scan else args.max_search)
        if args.json:
            self.write(json.dumps(rep, indent=1) + "\n")
        else:
            self.write(leak_text(rep))


def register():
    commands.install(Leaks)
