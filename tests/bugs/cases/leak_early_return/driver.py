"""100 calls that succeed and 100 that raise: each failure leaks its argument tuple."""
import sys

sys.path.insert(0, sys.argv[1])
import leak_early_return  # noqa: E402


def fetch(url, timeout):
    if url.startswith("bad:"):
        raise ConnectionError(url)
    return len(url) + timeout


for i in range(100):
    assert leak_early_return.call_with_timeout(fetch, "ok:%d" % i, 1.5) == len("ok:%d" % i) + 1.5
    try:
        leak_early_return.call_with_timeout(fetch, "bad:%d" % i, 0.25)
    except ConnectionError:
        pass
