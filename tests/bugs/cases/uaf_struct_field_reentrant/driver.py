"""A line parser whose callback resets the parser on a "RESET" line."""
import sys

sys.path.insert(0, sys.argv[1])
import uaf_struct_field_reentrant  # noqa: E402

seen = []


def on_line(line):
    seen.append(line)
    if line == b"RESET":
        parser.reset()


parser = uaf_struct_field_reentrant.LineParser(on_line)
parser.feed(b"first line\nsecond ")
parser.feed(b"line\nRESET\nthird line\npartial")
print(seen)
