"""depth() of nested lists, then of a list that contains itself."""
import sys

sys.path.insert(0, sys.argv[1])
import crash_stack_overflow  # noqa: E402

assert crash_stack_overflow.depth([1, [2, [3]], []]) == 3
loop = [1, 2]
loop.append(loop)
print(crash_stack_overflow.depth(loop))
