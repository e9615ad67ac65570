"""Tokenizes a few lines and prints the words."""
import sys

sys.path.insert(0, sys.argv[1])
import double_decref_helper  # noqa: E402

for line in ("the quick brown fox", "  jumps over\tthe lazy dog  "):
    words = double_decref_helper.tokenize(line)
    print(len(words), words)
