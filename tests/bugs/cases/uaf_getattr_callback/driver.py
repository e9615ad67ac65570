"""render() with lazy options whose first attribute read reloads the item list."""
import sys

sys.path.insert(0, sys.argv[1])
import uaf_getattr_callback  # noqa: E402


class LazyOptions:
    """Loads its settings on first use; loading refreshes the shared item list."""

    def __init__(self, items):
        self._items = items

    def __getattr__(self, name):
        if name == "prefix":
            self._items[:] = ["reloaded-%d" % i for i in range(2)]
            self.prefix = "> "
            return self.prefix
        raise AttributeError(name)


items = [("entry", i, 2.5 * i) for i in range(3)]
print(uaf_getattr_callback.render(items, LazyOptions(items)))
