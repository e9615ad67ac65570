"""chunks() over lists and generators: run out, abandoned half-way, kept at the end."""
import sys

sys.path.insert(0, sys.argv[1])
import ok_iterator  # noqa: E402

chunks = ok_iterator.chunks
for n in range(1, 60):
    words = ["w%d" % i for i in range(n)]
    got = list(chunks(words, 4))
    assert [w for c in got for w in c] == words and all(len(c) <= 4 for c in got)
    it = chunks(("g%d" % i for i in range(n)), 3)
    first = next(it)
    assert first[0] == "g0"
    del it
kept = chunks(iter(range(1000, 1100)), 10)
head = next(kept)
