"""update_changed() where a replaced value's __del__ retracts the key from src."""
import sys

sys.path.insert(0, sys.argv[1])
import uaf_del_callback  # noqa: E402


class Lease:
    def __init__(self, name, registry=None):
        self.name, self.registry = name, registry

    def __del__(self):
        if self.registry is not None:
            self.registry.pop(self.name, None)      # releasing a lease retracts its offer

    def __repr__(self):
        return "Lease(%r)" % self.name


src = {}
name = "".join(["host", "-", "a"])            # a key object only src holds
src[name] = Lease("new-a")
dst = {"host-a": Lease("host-a", src)}
del name
print(uaf_del_callback.update_changed(dst, src))
