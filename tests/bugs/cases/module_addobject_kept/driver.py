"""Decodes good and bad data, then runs a full garbage collection."""
import gc
import sys

sys.path.insert(0, sys.argv[1])
import module_addobject_kept as codec  # noqa: E402

print(codec.decode(b"plain ascii"))
try:
    codec.decode(b"caf\xc3\xa9")
except codec.CodecError as e:
    print("CodecError:", e)
gc.collect()
print("collected")
