"""Formats the addresses of a few servers, then prints the options again."""
import sys

sys.path.insert(0, sys.argv[1])
import borrowed_decref_dict  # noqa: E402

servers = [{"host": "db%d.example.org" % i, "port": 5432 + i} for i in range(5)]
servers.append({"port": 8080})
addresses = [borrowed_decref_dict.format_address(s) for s in servers]
assert addresses[-1] == "localhost:8080"
for s in servers:
    print(s)
