"""A plain script under pyref-run: echoes its arguments and standard input, leaks one
reference per line read (unless the extension is FIXED), exits with status 3."""
import sys

import leakcheck_ext

print("args", sys.argv[1:])
for line in sys.stdin:
    leakcheck_ext.remember(object())
    print("line", line.rstrip("\n"))
print("to stderr", file=sys.stderr)
sys.exit(3)
