"""Reads missing settings (fine), then present ones (over-released), then the dict."""
import sys

sys.path.insert(0, sys.argv[1])
import borrowed_decref_branch  # noqa: E402

settings = {"level": 10 ** 30, "name": "svc-%d" % 7, "ratio": 0.25 + 1e-9}
for _ in range(3):
    assert borrowed_decref_branch.get_setting(settings, "missing") == "None"
    assert borrowed_decref_branch.get_setting(settings, "missing", 3.5) == "3.5"
for key in ("level", "name", "ratio"):
    print(key, borrowed_decref_branch.get_setting(settings, key))
print(settings)
