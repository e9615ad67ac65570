"""Reads the labels of a few gauges, then prints the gauges."""
import sys

sys.path.insert(0, sys.argv[1])
import getter_borrowed_return  # noqa: E402

gauges = [getter_borrowed_return.Gauge("cpu%d.load" % i, i / 4) for i in range(4)]
for g in gauges:
    print(g.label.upper())
print(gauges)
