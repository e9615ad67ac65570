"""Means of lists (fine), then of a generator of fresh floats."""
import sys

sys.path.insert(0, sys.argv[1])
import premature_decref_fast  # noqa: E402

print(premature_decref_fast.mean([1.0, 2.0, 3.0]))
print(premature_decref_fast.mean(x * 0.5 for x in range(1, 9)))
