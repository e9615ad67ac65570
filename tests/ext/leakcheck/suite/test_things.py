"""The test suite pyref-run checks: one clean test, one that leaks a reference per call of
leakcheck_ext.remember, one that loses a reference to None per call of nothing()."""
import leakcheck_ext


def test_clean():
    assert sum(range(10)) == 45


def test_leaky():
    for i in range(100):
        leakcheck_ext.remember(object())


def test_parent():
    for _ in range(100):
        assert leakcheck_ext.nothing() is None
