"""Reads records of a table, then an index from a corrupt header."""
import sys

sys.path.insert(0, sys.argv[1])
import crash_untraced_lib  # noqa: E402

table = b"".join(bytes([i]) * 64 for i in range(10))
for i in range(10):
    assert crash_untraced_lib.record(table, i) == bytes([i]) * 64
header = (0x7F00_0000_0000).to_bytes(8, "little")
print(crash_untraced_lib.record(table, int.from_bytes(header, "little") // 64))
