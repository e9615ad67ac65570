"""The ring's C layout is the one docs/ring-format.md gives.

The offsets come from two places that must not drift: the markdown tables of the spec
(parsed here from the doc file itself) and the DWARF of the built runtime (read by
`gdb -batch -nx` on build/libpyref.so through gdb's Python API: `Type.fields()`,
`bitpos // 8`, `sizeof`). Every row of every layout table must name a C field at that
offset with that size, every C field must have its row, and each table must cover its
struct byte for byte. The record field table the runtime writes into the header, and the
commit word's bit positions in the write protocol, are checked against the record table.
"""
import ctypes
import json
import os
import re
import subprocess

import pytest

import pyreftest

DOC = os.path.join(pyreftest.ROOT, "docs", "ring-format.md")
LIB = os.path.join(pyreftest.BUILD, "libpyref.so")

# Section heading (its start) -> the C struct its table describes.
TABLES = {
    "Header, fixed part": "pyref_ring_header",
    "Thread descriptor": "pyref_thread",
    "Record": "pyref_record",
    "Site record": "pyref_site",
}

# Runs inside gdb: every field of each struct, nested unions and structs flattened, as JSON.
GDB_SCRIPT = r'''
import gdb, json

def flatten(t, base, prefix, out):
    for f in t.fields():
        ft = f.type.strip_typedefs()
        off = base + f.bitpos // 8
        path = prefix + (f.name or "")
        nested = ft.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION)
        count = None
        if ft.code == gdb.TYPE_CODE_ARRAY:
            lo, hi = ft.range()
            count = hi - lo + 1
        out.append(dict(path=path, name=f.name, offset=off, size=ft.sizeof,
                        nested=nested, count=count, bitsize=f.bitsize))
        if nested:
            flatten(ft, off, path + "." if f.name else prefix, out)

layout = {}
for name in %(structs)r:
    t = gdb.lookup_type("struct " + name)
    fields = []
    flatten(t, 0, "", fields)
    layout[name] = dict(sizeof=t.sizeof, fields=fields)
print("LAYOUT-JSON " + json.dumps(layout))
'''


# ---------------------------------------------------------------------------------------
# The two sources
# ---------------------------------------------------------------------------------------
def doc_tables(text):
    """{heading: (heading size or None, [(off, size, field cell), ...])} for every table
    whose header row is `| off | size | field | meaning |`, keyed by the `## ` heading it
    sits under."""
    tables = {}
    heading = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## "):
            heading = line[3:].strip()
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:3] == ["off", "size", "field"] and heading:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                c = [x.strip() for x in row.strip().strip("|").split("|")]
                rows.append((int(c[0]), int(c[1]), c[2], c[3] if len(c) > 3 else ""))
            m = re.search(r"(\d+) bytes", heading)
            tables[heading] = (int(m.group(1)) if m else None, rows)
    return tables


@pytest.fixture(scope="module")
def doc():
    with open(DOC) as f:
        return f.read()


@pytest.fixture(scope="module")
def tables(doc):
    found = doc_tables(doc)
    out = {}
    for prefix, struct in TABLES.items():
        hits = [h for h in found if h.split(" (")[0] == prefix]
        assert len(hits) == 1, "no single table under a '## %s' heading in %s: %s" % (
            prefix, DOC, sorted(found))
        out[struct] = found[hits[0]]
    return out


@pytest.fixture(scope="module")
def layout():
    pyreftest.ensure_runtime()
    script = GDB_SCRIPT % {"structs": sorted(TABLES.values())}
    p = subprocess.run(pyreftest.gdb_command(["python\n" + script + "\nend"], [LIB],
                                             load_pyref=False),
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"^LAYOUT-JSON (.*)$", p.stdout, re.M)
    assert m, "gdb could not read the structs from %s (built with -g?):\n%s%s" % (
        LIB, p.stdout, p.stderr)
    return json.loads(m.group(1))


def leaf_fields(struct_layout):
    """The C fields that hold bytes themselves (not the unions/structs around them)."""
    return [f for f in struct_layout["fields"] if not f["nested"] or f["name"] is None]


def field_name(cell):
    """`fields[8]` -> ("fields", 8); `magic` -> ("magic", None); reserved -> (None, None)."""
    m = re.fullmatch(r"`(\w+)(?:\[(\d+)\])?`", cell)
    if not m:
        return None, None
    return m.group(1), int(m.group(2)) if m.group(2) else None


# ---------------------------------------------------------------------------------------
# Doc -> C
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("struct", sorted(TABLES.values()))
def test_every_documented_field_is_there(struct, tables, layout):
    size, rows = tables[struct]
    fields = layout[struct]["fields"]
    problems = []
    for off, nbytes, cell, _ in rows:
        name, count = field_name(cell)
        if name is None:  # a reserved span: a reserved* field exactly there
            match = [f for f in fields if (f["name"] or "").startswith("reserved")
                     and f["offset"] == off and f["size"] == nbytes]
            if not match:
                problems.append("reserved %d+%d: no reserved field there" % (off, nbytes))
            continue
        named = [f for f in fields if f["name"] == name]
        if not named:
            problems.append("`%s`: no such field in struct %s" % (name, struct))
            continue
        at = [f for f in named if f["offset"] == off and f["size"] == nbytes]
        if not at:
            problems.append("`%s`: doc says offset %d size %d, C has %s" % (
                name, off, nbytes, ", ".join("offset %d size %d" % (f["offset"], f["size"])
                                             for f in named)))
        elif count is not None and at[0]["count"] != count:
            problems.append("`%s`: doc says %d elements, C has %s" % (name, count,
                                                                     at[0]["count"]))
    assert not problems, "struct %s vs %s:\n  %s" % (struct, DOC, "\n  ".join(problems))


@pytest.mark.parametrize("struct", sorted(TABLES.values()))
def test_table_covers_the_struct(struct, tables, layout):
    size, rows = tables[struct]
    assert size == layout[struct]["sizeof"], (
        "doc heading says %s bytes, sizeof(struct %s) is %d" % (size, struct,
                                                               layout[struct]["sizeof"]))
    covered = [0] * size
    for off, nbytes, cell, _ in rows:
        assert off + nbytes <= size, "row %s (%d+%d) runs past %d bytes" % (cell, off, nbytes,
                                                                          size)
        for b in range(off, off + nbytes):
            covered[b] += 1
    gaps = [b for b, n in enumerate(covered) if n == 0]
    assert not gaps, "bytes of struct %s that no row of the doc covers: %s" % (struct, gaps)


# ---------------------------------------------------------------------------------------
# C -> doc
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("struct", sorted(TABLES.values()))
def test_every_c_field_is_documented(struct, tables, layout):
    size, rows = tables[struct]
    documented = {field_name(cell)[0] for _, _, cell, _ in rows}
    reserved = {(off, n) for off, n, cell, _ in rows if field_name(cell)[0] is None}
    missing = []
    for f in leaf_fields(layout[struct]):
        if f["name"] in documented:
            continue
        if (f["name"] or "").startswith("reserved") and (f["offset"], f["size"]) in reserved:
            continue
        if struct == "pyref_ring_header" and f["name"] == "threads":
            continue  # the thread table, checked below
        missing.append("%s (offset %d size %d)" % (f["path"], f["offset"], f["size"]))
    assert not missing, "fields of struct %s that %s does not document: %s" % (
        struct, DOC, ", ".join(missing))


def test_thread_table_follows_the_fixed_part(tables, layout):
    """The header's flexible `threads[]` starts where `thread_table_off` says, and each
    element is one documented thread descriptor."""
    _, rows = tables["pyref_ring_header"]
    meaning = [m for _, _, cell, m in rows if cell == "`thread_table_off`"][0]
    doc_off = int(re.search(r"(\d+)\s*$", meaning).group(1))
    threads = [f for f in layout["pyref_ring_header"]["fields"] if f["name"] == "threads"]
    assert threads and threads[0]["offset"] == doc_off == tables["pyref_ring_header"][0]
    desc_size = [m for _, _, cell, m in rows if cell == "`thread_desc_size`"][0]
    assert int(desc_size) == layout["pyref_thread"]["sizeof"] == tables["pyref_thread"][0]


# ---------------------------------------------------------------------------------------
# The record field table and the commit word
# ---------------------------------------------------------------------------------------
def record_offsets(tables):
    return {field_name(cell)[0]: (off, n) for off, n, cell, _ in tables["pyref_record"][1]}


def test_header_field_table_is_the_record_table(tables):
    """The (offset, size) pairs the runtime writes into header.fields are the record
    table's, in the order the doc lists them."""
    _, rows = tables["pyref_ring_header"]
    meaning = [m for _, _, cell, m in rows if cell.startswith("`fields[")][0]
    order = re.findall(r"`(\w+)`", meaning.split("for", 1)[1])
    assert len(order) == 8, order
    rec = record_offsets(tables)
    want = [rec[name] for name in order]

    lib = ctypes.CDLL(LIB)  # its constructor builds a header in this process
    addr = ctypes.c_void_p.in_dll(lib, "pyref_ring").value
    assert addr, "libpyref created no header"
    hdr = ctypes.string_at(addr, 256)
    fields_off = [off for off, _, cell, _ in rows if cell.startswith("`fields[")][0]
    got = [(hdr[fields_off + 2 * i], hdr[fields_off + 2 * i + 1]) for i in range(8)]
    assert got == want, "header.fields %s, doc's record table gives %s for %s" % (
        got, want, order)
    magic = [m for _, _, cell, m in rows if cell == "`magic`"][0]
    want_magic = int(re.search(r"0x[0-9A-Fa-f]+", magic).group(0), 16)
    assert int.from_bytes(hdr[:8], "little") == want_magic


def test_commit_word_bits_match_the_record_table(doc, tables):
    """Write protocol step 5 builds commit from seq, op, delta and serial (tid) at bit
    shifts that must be where the record table puts those fields inside `commit`."""
    m = re.search(r"`slot\.commit = s \| op << (\d+) \| delta << (\d+) \| serial << (\d+)`",
                  doc)
    assert m, "write protocol step 5 not found in %s" % DOC
    rec = record_offsets(tables)
    commit_off, commit_size = rec["commit"]
    shifts = {"seq": 0, "op": int(m.group(1)), "delta": int(m.group(2)),
              "tid": int(m.group(3))}
    for name, shift in shifts.items():
        off, size = rec[name]
        assert commit_off <= off and off + size <= commit_off + commit_size, name
        assert (off - commit_off) * 8 == shift, "%s: byte %d of commit, shift %d" % (
            name, off - commit_off, shift)


def test_reader_and_runtime_versions_agree():
    from pyref import __version__  # pyreftest put gdbext/ on sys.path
    with open(os.path.join(pyreftest.ROOT, "c_helpers", "ring.c")) as f:
        c = re.search(r'pyref_version\[\] = "([^"]+)"', f.read()).group(1)
    assert __version__ == c
