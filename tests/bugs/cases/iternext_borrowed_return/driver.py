"""Iterates a table of fresh rows, then reads the rows again."""
import sys

sys.path.insert(0, sys.argv[1])
import iternext_borrowed_return  # noqa: E402

table = iternext_borrowed_return.Table(("row-%d" % i, i * 1.5) for i in range(6))
for name, value in table:
    print(name, value)
print(table.rows)
