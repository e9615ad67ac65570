"""Builds a small tree whose values are also kept in a list, drops the tree, prints the
values."""
import sys

sys.path.insert(0, sys.argv[1])
import double_clear_dealloc  # noqa: E402

Node = double_clear_dealloc.Node
values = [["payload", i] for i in range(4)]
root = Node(values[0])
leaves = [Node(v, root) for v in values[1:]]
del root, leaves
print(values)
