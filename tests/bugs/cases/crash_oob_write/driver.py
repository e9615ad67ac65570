"""hexlify() of a few byte strings (each call writes past its buffer)."""
import sys

sys.path.insert(0, sys.argv[1])
import crash_oob_write  # noqa: E402

for data in (b"\xde\xad\xbe\xef", bytes(range(16)), b"x" * 100):
    print(crash_oob_write.hexlify(data))
