"""Facts in, findings out: the ownership rules pyref reasons with, over events (ring records
with their sites resolved) and what is known of an object now, and the reference semantics
of the CPython C API (`capi`). Nothing here imports gdb or reads the target
(tests/unit/test_layers.py checks)."""
