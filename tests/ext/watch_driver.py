"""Calls watch_ext.series() from Python (tests/gdb/test_watch.py, tests/gdb/test_pystack.py).
argv[1]: the directory holding the built watch_ext module; argv[2]: "plain" (series() under
two Python functions) or "deep" (also through a method, a generator, C calling back into
Python, with a second thread parked in Event.wait). Lines are named by `# @marker`."""
import sys
import threading

sys.path.insert(0, sys.argv[1])
import watch_ext  # noqa: E402


def inner():
    watch_ext.series()  # @py-inner


def outer():
    inner()  # @py-outer


class Deep:
    def method(self):
        yield from self.gen()  # @py-method

    def gen(self):
        watch_ext.call(outer)  # @py-gen
        yield 1


def parked(ready, release):
    ready.set()
    release.wait()  # @py-parked


def deep():
    ready, release = threading.Event(), threading.Event()
    t = threading.Thread(target=parked, args=(ready, release))
    t.start()
    ready.wait()
    list(Deep().method())  # @py-deep
    release.set()
    t.join()


if sys.argv[2:] == ["deep"]:
    deep()  # @py-deep-call
else:
    outer()  # @py-module
