"""Runs one demoext scenario until it crashes (or aborts, for scenarios a version does not
crash on). Usage: python scenario.py MODULE_DIR NAME"""
import os
import sys
import threading
import time

sys.path.insert(0, sys.argv[1])
import demoext  # noqa: E402

name = sys.argv[2]


class DeletesFirst:
    """Its __del__ deletes the list's first item: the 'list store runs arbitrary code'."""

    def __init__(self, lst):
        self.lst = lst

    def __del__(self):
        del self.lst[0]


if name == "borrowed_tuple_item":
    demoext.borrowed_tuple_item()
elif name == "borrowed_list_item_del":
    lst = [bytes(range(40)), None]
    lst[1] = DeletesFirst(lst)
    demoext.borrowed_list_item_del(lst)
elif name == "decref_none":
    if hasattr(sys, "getrefcount") and sys.version_info < (3, 12):
        demoext.decref_none(sys.getrefcount(None) + 10)
    else:
        demoext.decref_none(10)  # immortal: harmless; abort below for the report
elif name == "stolen_then_decref":
    demoext.stolen_then_decref()
elif name == "borrowed_across_gil_release":
    lst = [bytes(range(50))]

    def clear():
        time.sleep(0.05)
        lst.clear()
        demoext.mark_cleared()
    t = threading.Thread(target=clear)
    t.start()
    demoext.borrowed_across_gil_release(lst)
    t.join()
elif name == "correct":
    lst = [bytes(range(40)), None]
    lst[1] = DeletesFirst(lst)
    demoext.correct(lst)
elif name == "null_deref":
    demoext.null_deref({})
else:
    sys.exit("unknown scenario " + name)
print("scenario %s did not crash; aborting for a core" % name, flush=True)
os.abort()
