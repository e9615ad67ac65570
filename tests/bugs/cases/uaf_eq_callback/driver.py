"""unique() of records whose first __eq__ call empties the list being deduplicated."""
import sys

sys.path.insert(0, sys.argv[1])
import uaf_eq_callback  # noqa: E402


class Record:
    __hash__ = None

    def __init__(self, name, on_compare=None):
        self.name, self.on_compare = name, on_compare

    def __eq__(self, other):
        if self.on_compare is not None:
            hook, self.on_compare = self.on_compare, None
            hook()
        return isinstance(other, Record) and self.name == other.name

    def __repr__(self):
        return "Record(%r)" % self.name


records = [Record("alpha"), Record("beta-%d" % 2), Record("alpha")]
records[0].on_compare = records.clear
out = uaf_eq_callback.unique(records)
print(out)
