"""The owners report of `pyref owners` as data, and its words: the Owner of each word that
holds the object's address, the graph of owners of owners (`--depth`), the account
(refcount N, K owners found, N - K unexplained), and its text, JSON and Graphviz forms.
Facts in (the Owners inferior/memsearch.py found), findings out; no gdb here.

Stale words — dead stack, free allocator blocks, freed objects (count 0, 0xDD fill), slots
past a list's end, deleted dict entries, dead interpreter stack — are kept with the reason
and hidden unless --all. Words in live C frames that no variable claims (spills, saved
registers, temporaries) are shown as "possible" and not counted.
"""
import json

from pyref.reader import scan, sites
from pyref.rules.events import current_lifetime

LIVE = "live"              # ObjectInfo.state of a live object (inferior/objects.py)
MAX_DEPTH = 10             # --depth limit
MAX_NODES = 200            # objects in a --depth graph
MAX_FRONTIER = 32          # objects searched per level


class Owner:
    """One word holding the object's address, attributed.

    kind     'object' (a slot of a Python object), 'static' (a C global or a field of
             the interpreter's state), 'stack' (a C frame), 'pyframe' (an interpreter
             frame), 'heap' (a block of unknown owner)
    text     what a user reads: "list 0x... item [3]"
    holder   address of the Python object that holds the reference (for --depth), or None
    label    short name of the holder node ("list 0x...", "module 'm'", "held_static")
    edge     the slot, short ("[3]", "['k']", ".attr", "held_local")
    root     True for roots of the graph (modules, C globals, stacks, interpreter frames)
    stale    None, or why the word is stale (hidden unless --all)
    counted  True when it counts as an owner in the account
    detail   'possible' for a word shown but not counted (a live frame's unnamed slot, a
             borrowing cache, a buffer reached through an unknown pointer)
    """

    __slots__ = ("addr", "kind", "text", "holder", "label", "edge", "root", "stale",
                 "counted", "detail")

    def __init__(self, addr, kind, text, holder=None, label=None, edge=None, root=False,
                 stale=None, counted=True, detail=None):
        self.addr, self.kind, self.text = addr, kind, text
        self.holder, self.label, self.edge, self.root = holder, label, edge, root
        self.stale, self.counted, self.detail = stale, counted and stale is None, detail

    def as_dict(self):
        return {"word": "0x%x" % self.addr, "kind": self.kind, "description": self.text,
                "holder": None if self.holder is None else "0x%x" % self.holder,
                "slot": self.edge, "root": self.root, "stale": self.stale,
                "counted": self.counted}


def stale_owner(addr, kind, text, why):
    """An Owner for a stale word: shown with --all, never counted."""
    return Owner(addr, kind, text, stale=why, counted=False)


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------
class Report:
    """Everything `pyref owners` prints, as data (text and JSON are made from it)."""

    def __init__(self, addr):
        self.addr = addr
        self.info = None
        self.owners = []                # Owners of the object itself
        self.graph_edges = []           # (holder key, held addr, Owner)
        self.graph_nodes = {}           # key -> label
        self.registers = []
        self.ring_records = 0
        self.holders = []
        self.coverage = None
        self.problems = []
        self.levels = 0
        self.mem = None                 # the search (memsearch.Memory): regions, passes
        self.short = ""                 # a short repr of the object
        self.ringset = None             # the target's rings, when a ring was found
        self.kept = []                  # kept_pointers() of the object's ring history
        self.ring_incomplete = None     # why the ring's account of it may lack records


def kept_pointers(events):
    """The STEALs and BORROWs of traced code in the object's current lifetime, latest
    first: where a pointer may have been kept without its reference (a reference given
    to a call that steals it, a borrowed pointer stored) when holders outnumber the
    references."""
    return [e for e in reversed(current_lifetime(events))
            if e.file is not None and e.op in ("STEAL", "BORROW")]


def _node_key(o):
    if o.holder is not None:
        return o.holder
    return "root:%s" % o.label



def follow(rep, owners_of, depth):
    """Fills `rep` with the owners of its object and, `depth` levels up, the owners of
    those (holders that are not roots), bounded by MAX_NODES and MAX_FRONTIER.
    `owners_of(addrs)` gives {addr: [Owner]}."""
    addr = rep.addr
    frontier = [addr]
    visited = {addr}
    for level in range(depth):
        found = owners_of(frontier)
        rep.levels = level + 1
        nxt = []
        for held in frontier:
            for o in found[held]:
                if held == addr:
                    rep.owners.append(o)
                if o.stale is not None or not o.counted:
                    continue
                key = _node_key(o)
                rep.graph_edges.append((key, held, o))
                if key not in rep.graph_nodes:
                    rep.graph_nodes[key] = o.label or "?"
                if o.holder is not None and not o.root and o.holder not in visited:
                    if len(visited) >= MAX_NODES:
                        cut = "graph cut at %d objects" % MAX_NODES
                        if cut not in rep.problems:
                            rep.problems.append(cut)
                        continue
                    visited.add(o.holder)
                    nxt.append(o.holder)
        if len(nxt) > MAX_FRONTIER:
            rep.problems.append("level %d: only %d of %d owners searched further" % (
                level + 2, MAX_FRONTIER, len(nxt)))
            nxt = nxt[:MAX_FRONTIER]
        frontier = nxt
        if not frontier:
            break
    if depth > 1 and frontier:
        rep.problems.append("--depth %d reached: the owners of %d object%s were not "
                            "searched" % (depth, len(frontier),
                                          "" if len(frontier) == 1 else "s"))
    return rep


# ---------------------------------------------------------------------------------------
# Text, JSON, Graphviz
# ---------------------------------------------------------------------------------------
def _refcount(info):
    """(N, immortal) or (None, False)."""
    rc = info.refcount
    if rc is None or info.state != LIVE:
        return None, False
    return rc.total, bool(rc.immortal)


def site_text(file_, line, func):
    """Site.short() of a JSON site, 'inside CPython' without a file."""
    return sites.where(sites.Site(0, file_, line, func) if file_ is not None else None)


def report_text(rep, show_all=False):
    info = rep.info
    out = []
    n, immortal = _refcount(info)
    if info.state == LIVE:
        out.append("0x%x: %s %s, refcount %s" % (rep.addr, info.type.name, rep.short,
                                                  info.refcount))
    else:
        out.append("0x%x: %s%s" % (rep.addr, info.state,
                                   ": " + info.reason if info.reason else ""))
    shown = [o for o in rep.owners if show_all or o.stale is None]
    counted = [o for o in rep.owners if o.counted]
    possible = [o for o in rep.owners if o.stale is None and not o.counted]
    stale = [o for o in rep.owners if o.stale is not None]
    if not shown:
        out.append("no owners found in memory")
    else:
        out.append("owners (%d word%s):" % (len(shown), "" if len(shown) == 1 else "s"))
        for o in shown:
            mark = "possible: " if not o.counted and not o.stale else ""
            why = "  [stale: %s]" % o.stale if o.stale else ""
            out.append("  0x%x  %s%s%s" % (o.addr, mark, o.text, why))
    if rep.levels > 1:
        out.append("owner graph (%d level%s):" % (rep.levels, "" if rep.levels == 1
                                                  else "s"))
        out.extend(_tree_lines(rep))
    if rep.registers:
        out.append("also in register%s: %s" % ("" if len(rep.registers) == 1 else "s",
                                                ", ".join(rep.registers)))
    k = len(counted)
    if immortal:
        out.append("account: immortal object (refcount %s): the count says nothing; "
                   "%d owner%s found" % (info.refcount, k, "" if k == 1 else "s"))
    elif n is not None:
        u = n - k
        line = "account: refcount %d, %d owner%s found, %d unexplained" % (
            n, k, "" if k == 1 else "s", u)
        if u < 0:
            line += " (more pointers than references: some holders borrow)"
        out.append(line)
        if u < 0 and rep.kept:
            e = rep.kept[0]
            out.append("  a holder without a reference is a refcount bug unless it only "
                       "borrows; the ring's latest candidate: the pointer %s" % e.how())
    if possible:
        out.append("  (%d possible word%s not counted: stack slots no variable claims, "
                   "borrowing caches, weak or static-type pointers, buffers reached from "
                   "unknown memory)" % (len(possible), "" if len(possible) == 1 else "s"))
    if rep.holders:
        out.append("ring: C sites holding references they acquired and never released:")
        for file_, line, func, api, count in rep.holders:
            out.append("  %s %s: %d" % (site_text(file_, line, func), api or "", count))
    elif rep.ringset is not None and rep.ringset.rings:
        out.append("ring: unknown: " + rep.ring_incomplete if rep.ring_incomplete else
                   "ring: no C site holds an unreleased reference to it")
    if rep.coverage:
        out.append("  (%s)" % rep.coverage)
    if rep.holders and rep.ring_incomplete:
        out.append("  (incomplete: %s)" % rep.ring_incomplete)
    hidden = []
    if stale and not show_all:
        kinds = {}
        for o in stale:
            kinds[o.stale.split(" (")[0]] = kinds.get(o.stale.split(" (")[0], 0) + 1
        hidden.append("%d stale word%s (%s)" % (len(stale), "" if len(stale) == 1 else "s",
                                                ", ".join("%d %s" % (v, k) for k, v in
                                                          sorted(kinds.items()))))
    if rep.ring_records:
        hidden.append("%d record%s in the pyref ring (history, not owners)" % (
            rep.ring_records, "" if rep.ring_records == 1 else "s"))
    if hidden:
        out.append("not shown: " + "; ".join(hidden) +
                   ("; --all shows the stale words" if stale and not show_all else ""))
    for p in rep.problems:
        out.append("note: " + p)
    out.append(_scan_line(rep.mem))
    return "\n".join(out) + "\n"


def _scan_line(mem):
    return "memory: " + scan_summary(mem)


def scan_summary(mem):
    total = sum(r.scanned for r in mem.passes)
    secs = sum(r.seconds - r.callback_seconds for r in mem.passes)
    unread = sum(r.unreadable for r in mem.passes)
    rate = total / secs / 1e9 if secs > 0 else 0.0
    early = sum(1 for r in mem.passes if r.stopped_early)
    return "%.1f MiB searched; %d pass%s read %.1f MiB in %.2f s (%.2f GB/s)%s%s" % (
        mem.total / 1048576.0, len(mem.passes), "" if len(mem.passes) == 1 else "es",
        total / 1048576.0, secs, rate,
        " (%d stopped once answered)" % early if early else "",
        "; %d bytes unreadable" % unread if unread else "")


def _tree_lines(rep):
    """The graph as an indented tree from the object up to its roots."""
    by_held = {}
    for key, held, o in rep.graph_edges:
        by_held.setdefault(held, []).append((key, o))
    lines = []
    printed = set()

    def walk(node, indent, path):
        for key, o in by_held.get(node, ()):
            lab = rep.graph_nodes.get(key, "?")
            extra = ""
            if key in path:
                extra = "  (cycle)"
            elif key in printed and key in by_held:
                extra = "  (shown above)"
            lines.append("%s<- %s %s%s" % ("  " * indent, lab, o.edge, extra))
            if not extra and key in by_held:
                printed.add(key)
                walk(key, indent + 1, path | {key})
    walk(rep.addr, 1, {rep.addr})
    return lines


def report_json(rep, show_all=False):
    info = rep.info
    n, immortal = _refcount(info)
    counted = [o for o in rep.owners if o.counted]
    return json.dumps({
        "address": "0x%x" % rep.addr,
        "type": info.type.name if info.type else None, "state": info.state,
        "refcount": n, "immortal": immortal,
        "owners": [o.as_dict() for o in rep.owners if show_all or o.stale is None],
        "hidden_stale": 0 if show_all else sum(1 for o in rep.owners if o.stale),
        "account": {"refcount": n, "found": len(counted),
                    "unexplained": None if n is None or immortal else n - len(counted)},
        "registers": rep.registers,
        "ring": {"records": rep.ring_records, "coverage": rep.coverage,
                 "incomplete": rep.ring_incomplete,
                 "holders": [{"file": f, "line": ln, "function": fn, "api": api,
                              "count": c} for f, ln, fn, api, c in rep.holders],
                 "kept": [{"op": e.op, "file": e.file, "line": e.line, "function": e.func,
                           "api": e.api} for e in rep.kept[:5]]},
        "graph": {"nodes": [{"id": _key_text_id(k), "label": v}
                            for k, v in rep.graph_nodes.items()],
                  "edges": [{"from": _key_text_id(k), "to": _key_text_id(h),
                             "slot": o.edge, "description": o.text}
                            for k, h, o in rep.graph_edges]},
        "scan": {"bytes": rep.mem.total, "passes": len(rep.mem.passes),
                 "seconds": round(sum(r.seconds for r in rep.mem.passes), 4),
                 "accelerated": scan.accelerated()},
        "problems": rep.problems}, indent=1)


def _key_text_id(k):
    return "0x%x" % k if isinstance(k, int) else k


def dot_text(rep):
    """The owner graph as Graphviz."""
    def q(s):
        return '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"').replace(
            "\\\\n", "\\n")

    ids = {}
    for k in rep.graph_nodes:
        ids[k] = "n%d" % len(ids)
    lines = ["digraph owners {", "  rankdir=BT;",
             '  node [shape=box, fontname="monospace", fontsize=10];',
             '  edge [fontname="monospace", fontsize=9];']
    roots = {k for k, _, o in rep.graph_edges if o.root}
    for k, label in rep.graph_nodes.items():
        style = ""
        if k == rep.addr:
            style = ", style=filled, fillcolor=\"#ffd7d7\""
        elif k in roots:
            style = ", shape=ellipse, style=filled, fillcolor=\"#d7e8ff\""
        lines.append("  %s [label=%s%s];" % (ids[k], q(label), style))
    for k, held, o in rep.graph_edges:
        lines.append("  %s -> %s [label=%s];" % (ids[held], ids[k], q(o.edge or "")))
    lines.append("}")
    return "\n".join(lines) + "\n"
