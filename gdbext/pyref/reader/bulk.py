"""Reading a target in bulk: a range in chunks of at most CHUNK bytes, each chunk that
fails bisected for its readable prefix (a truncated core is readable up to a point). Memory
is read this way, never a word at a time (docs/architecture.md, "Speed").
"""
from pyref.errors import READ_ERRORS

PAGE = 4096
CHUNK = 1 << 20                            # bulk read size: 256 KiB-1 MiB reads cost least


def _salvage(read, addr, size):
    """The largest readable prefix of [addr, addr+size) in whole pages, found by bisection
    (a truncated core is readable up to a point). At most ~log2(size/4096)+1 reads."""
    npages = -(-size // PAGE)
    try:
        best = bytes(read(addr, min(PAGE, size)))
    except READ_ERRORS:
        return b""
    if npages <= 1:
        return best
    lo, hi = 1, npages
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            got = bytes(read(addr, mid * PAGE))
        except READ_ERRORS:
            hi = mid
            continue
        best = got
        if len(got) < mid * PAGE:
            break
        lo = mid
    return best


def read_pieces(read, addr, size, unit=1, chunk=CHUNK):
    """Reads [addr, addr+size) in chunks of at most `chunk` bytes. Returns
    [(offset, bytes)] of what could be read, each piece a whole number of `unit`s; a chunk
    that fails is bisected for its readable prefix."""
    chunk = max(unit, chunk // unit * unit)
    pieces = []
    off = 0
    while off < size:
        n = min(chunk, size - off)
        try:
            got = bytes(read(addr + off, n))
        except READ_ERRORS:
            got = _salvage(read, addr + off, n)
        got = got[:n]
        keep = len(got) // unit * unit
        if keep:
            pieces.append((off, got[:keep] if keep < len(got) else got))
        off += n
    return pieces


def first_line(e):
    """The first line of an exception's message (its type name when it has none)."""
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__
