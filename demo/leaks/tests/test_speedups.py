"""The demo package's tests: each passes; one of them leaks (pyref-run says which)."""
import _speedups


def test_encode_dict():
    for i in range(1000, 2000):
        assert _speedups.encode_dict({"n": i}) == "n=%d" % i


def test_encode_list():
    for i in range(1000):
        assert _speedups.encode_list([i, "x"]) == "%d,x" % i


def test_intern_key():
    keys = ["key%d" % i for i in range(20)]
    for _ in range(50):
        for k in keys:
            assert _speedups.intern_key(k) == k
