"""Parses good pairs, then a value that is not UTF-8."""
import sys

sys.path.insert(0, sys.argv[1])
import steal_tuple_cleanup  # noqa: E402

for line in (b"user=alice", b"home=/home/alice", b"shell=/bin/sh", b"name=\xff\xfe"):
    try:
        print(steal_tuple_cleanup.parse_pair(line))
    except UnicodeDecodeError as e:
        print("bad line", line, e)
