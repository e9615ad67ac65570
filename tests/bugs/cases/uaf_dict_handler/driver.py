"""Two handlers for "ready"; the first one unregisters the event (a one-shot)."""
import sys

sys.path.insert(0, sys.argv[1])
import uaf_dict_handler  # noqa: E402

d = uaf_dict_handler.Dispatcher()
log = []
d.on("ready", lambda p: (log.append(("once", p)), d.off("ready")))
d.on("ready", lambda p: log.append(("always", p)))
print(d.emit("ready", 1), log)
