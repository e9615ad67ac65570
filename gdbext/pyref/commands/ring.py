"""`pyref ring`: where the ring is, its capacity, what was written, decoded, overwritten,
torn and lost (inferior/rings.py finds and decodes it)."""
import json

import gdb

from pyref import commands
from pyref.inferior import rings


def ring_report(ringset):
    """Text lines describing every ring of the RingSet."""
    out = []
    for p in ringset.problems:
        out.append("warning: " + p)
    for ring in ringset.rings:
        h = ring.header
        out.append("ring at 0x%x (found by %s), format v%d, pid %d" %
                   (ring.addr, getattr(ring, "found_by", ringset.how), h.version, h.pid))
        out.append("  capacity     %d records per thread, %d-byte records, %d thread slots" %
                   (h.capacity, h.record_size, h.max_threads))
        out.append("  written      %d" % ring.written)
        out.append("  decoded      %d" % ring.decoded)
        out.append("  overwritten  %d%s" % (ring.overwritten,
                   "  (oldest history gone: the ring wrapped)" if ring.overwritten else ""))
        out.append("  torn         %d" % ring.torn)
        if ring.rejected or ring.rejections:
            out.append("  rejected     %d  (implausible: %s)" % (ring.rejected, ", ".join(
                "%d %s" % (n, k) for k, n in sorted(ring.rejections.items()))))
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
    out += ringset.caveats.lines()
    return out


class Ring(commands.Subcommand):
    name = "ring"
    reports_caveats = True
    summary = "Describe the pyref ring: where it is, its capacity, records written and lost."
    details = """\
Finds the ring through the pyref_ring symbol (exported by libpyref, so a stripped
extension still works), else by scanning writable memory for its header. Counts:
written = decoded + overwritten + torn + rejected (+ unreadable when the core lacks ring
memory); rejected records fail the plausibility checks (docs/reliability.md);
lost records were never written (re-entry guard, no thread slot)."""
    examples = ("pyref ring", "pyref ring --json")
    completer = gdb.COMPLETE_NONE

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def run(self, args, from_tty):
        ringset = rings.ring_set()
        if args.json:
            self.write(json.dumps({"rings": [{
                "address": "0x%x" % r.addr, "found_by": getattr(r, "found_by", ringset.how), "version": r.header.version,
                "capacity": r.header.capacity, "written": r.written, "decoded": r.decoded,
                "overwritten": r.overwritten, "torn": r.torn, "lost": r.lost,
                "unreadable": r.unreadable, "in_flight": r.in_flight,
                "rejected": r.rejected, "rejections": dict(r.rejections),
                "threads_seen": r.threads_seen, "first_seq": r.first_seq,
                "last_seq": r.last_seq, "errors": list(r.errors)} for r in ringset.rings],
                "problems": ringset.problems, "caveats": ringset.caveats.to_json()},
                indent=1) + "\n")
            return
        self.write("\n".join(ring_report(ringset)) + "\n")


def register():
    commands.install(Ring)
