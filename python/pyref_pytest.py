"""pyref's pytest plugin: marks each test's start and end in the pyref ring (pyref_mark),
so that `pyref leaks` and bin/pyref-run attribute each leaked reference to its test.
Loaded with `-p pyref_pytest` (bin/pyref-run loads it through PYTEST_PLUGINS)."""
