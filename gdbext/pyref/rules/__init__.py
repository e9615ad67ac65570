"""Rules of reference ownership that pyref's analyses apply: the reference semantics of the
CPython C API (`capi`). Pure data and functions: no gdb."""
