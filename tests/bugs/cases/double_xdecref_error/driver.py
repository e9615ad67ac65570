"""Loads good points, then one whose x is not a number, then uses its x."""
import sys

sys.path.insert(0, sys.argv[1])
import double_xdecref_error  # noqa: E402


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


class Label:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return "Label(%r)" % self.text


for i in range(10):
    assert double_xdecref_error.load_point(Point(i, i + 0.5)) == (i, i + 0.5)
bad = Point(Label("north"), 1.0)
try:
    double_xdecref_error.load_point(bad)
except TypeError:
    pass
print(repr(bad.x.text))
