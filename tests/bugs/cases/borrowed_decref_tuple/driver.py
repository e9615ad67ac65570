"""Joins paths made of fresh strings."""
import sys

sys.path.insert(0, sys.argv[1])
import borrowed_decref_tuple  # noqa: E402

for i in range(20):
    user = "user%d" % i
    p = borrowed_decref_tuple.join_path("home", user, "src")
    assert p == "home/%s/src" % user, p
    print(p, user)
