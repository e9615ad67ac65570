"""mimalloc's blocks in the target (reader/mimalloc.py reads them): the MiLayout from the
interpreter's DWARF (mi_segment_t, mi_page_t, mi_heap_t are described wherever CPython
compiled Objects/mimalloc/, its 3.13+ builds), _mi_heap_main's cookie, and one MiHeap per
stop. Without those types, or before mimalloc started, nothing is a mimalloc block.
"""
from pyref.inferior import target
from pyref.inferior.target import MemoryReadError
from pyref.reader import mimalloc as reader

METADATA = reader.METADATA


def _member(lay, *paths):
    """(offset, size) of the first of `paths` in `lay`, or None."""
    _, f = lay.find(*paths)
    return None if f is None else (f.offset, f.size)


def _make_layout():
    get = target.struct_layout
    seg = get("mi_segment_t", "struct mi_segment_s")
    page = get("mi_page_t", "struct mi_page_s")
    heap = get("mi_heap_t", "struct mi_heap_s")
    if seg is None or page is None or "slices" not in seg:
        return None
    slices = seg.field("slices")
    need = ("cookie", "segment_size", "segment_slices", "segment_info_slices",
            "slice_entries")
    pneed = ("slice_count", "slice_offset", "capacity", "reserved", "free", "used",
             "local_free", "xthread_free", "xheap")
    if not all(n in seg for n in need) or not all(n in page for n in pneed) or \
            not slices.elem_size or slices.elem_size != page.size:
        return None
    bsize = _member(page, "xblock_size", "block_size")
    if bsize is None:
        return None
    count = slices.size // slices.elem_size   # MI_SLICES_PER_SEGMENT + 1
    slice_size = 1 << reader.SLICE_SHIFT
    keys = _member(page, "keys")
    pad = get("mi_padding_t", "struct mi_padding_s")
    return reader.MiLayout(
        segment_size=slice_size * (count - 1), slice_size=slice_size, seg_header=seg.size,
        seg_slices=slices.offset, seg_cookie=_member(seg, "cookie"),
        seg_segment_size=_member(seg, "segment_size"),
        seg_segment_slices=_member(seg, "segment_slices"),
        seg_info_slices=_member(seg, "segment_info_slices"),
        seg_slice_entries=_member(seg, "slice_entries"), page_size=page.size,
        pg_slice_count=_member(page, "slice_count"),
        pg_slice_offset=_member(page, "slice_offset"),
        pg_capacity=_member(page, "capacity"), pg_reserved=_member(page, "reserved"),
        pg_free=_member(page, "free"), pg_used=_member(page, "used"),
        pg_block_size=bsize, pg_huge="xblock_size" in page,
        pg_local_free=_member(page, "local_free"),
        # mi_page_t has keys when the free lists are encoded (MI_ENCODE_FREELIST, debug
        # builds) or padded; CPython pads only when it encodes
        pg_keys=keys if keys and keys[1] == 16 else None,
        pg_xthread_free=_member(page, "xthread_free"), pg_xheap=_member(page, "xheap"),
        heap_delayed=_member(heap, "thread_delayed_free") if heap is not None else None,
        heap_keys=(_member(heap, "keys") if heap is not None and keys else None),
        padding=pad.size if pad is not None else 0)


def layout():
    """The MiLayout of the loaded interpreter, or None without mimalloc's types."""
    return target.cached("mimalloc.layout", _make_layout)


def _main_cookie():
    """_mi_heap_main.cookie (0 when mimalloc has not started or is not there)."""
    addr = target.symbol_address("_mi_heap_main")
    heap = target.struct_layout("mi_heap_t", "struct mi_heap_s")
    if addr is None or heap is None or "cookie" not in heap:
        return 0
    try:
        return target.read_u64(addr + heap.offset("cookie"))
    except MemoryReadError:
        return 0


def heap():
    """The MiHeap of this stop, or None when the target has no mimalloc."""
    cache = target.stop_cache()
    if "mimalloc.heap" not in cache:
        lay = layout()
        cookie = _main_cookie() if lay is not None else 0
        cache["mimalloc.heap"] = reader.MiHeap(target.read, lay, cookie) if cookie \
            else None
    return cache["mimalloc.heap"]


def block(hit):
    """reader.MiHeap.block of the word at `hit`, or None outside mimalloc's segments.
    Not bounded by the word's mapping: committing part of a segment (mprotect) splits
    the kernel's mapping inside it."""
    h = heap()
    return h.block(hit) if h is not None else None
