"""Each function, many times; sort_by's key shrinks the list it is sorting."""
import sys

sys.path.insert(0, sys.argv[1])
import ok_callbacks as cb  # noqa: E402

for i in range(100):
    words = ["w-%d-%d" % (i, j) for j in range(8)]

    def key(w, words=words):
        if len(words) > 5:
            words.pop()
        return w[::-1]

    got = cb.sort_by(words, key)
    assert len(got) >= 5
    d = {"k%d" % j: [j, "v%d" % j] for j in range(5)}
    assert cb.pairs(d) == list(d.items())
    assert cb.squares(20)[19] == 1000 + 19 * 19
    assert cb.first_str([1.5, (2,), "s%d" % i, "t"]) == "s%d" % i
    assert cb.first_str([1.5, 2.5]) is None
