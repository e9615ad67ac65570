"""bin/pyref-postmortem for CI, on a real core of a real bug (demo/demoext.c's borrowed
tuple item, python3.11d): the documented exit statuses, each report naming its core,
JSON Lines over a directory with junk in it, truncated cores called truncated with the
verdict unknown (status 2), gdb's noise kept out, the core named so that gdb never takes
it for a PID, a wrapper script resolved and another interpreter refused."""
import json
import os
import shutil
import subprocess

import pytest

import pyreftest

PYTHON = "/usr/bin/python3.11d"
OTHER = "/usr/bin/python3.11"
SRC = os.path.join(pyreftest.ROOT, "demo", "demoext.c")
SCENARIO = os.path.join(pyreftest.ROOT, "demo", "scenario.py")
POSTMORTEM = os.path.join(pyreftest.ROOT, "bin", "pyref-postmortem")
NOISE = ("BFD:", "Cannot access memory", "auto-load", "safe-path", "warning:",
         "Failed to read a valid object file", "[New LWP", "Core was generated",
         "Python Exception", "Traceback")

pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="no %s" % PYTHON)


@pytest.fixture(scope="module")
def bug_core(build_extension, tmp_path_factory):
    built = build_extension(SRC, PYTHON)
    d = tmp_path_factory.mktemp("pm-core")
    core, _ = pyreftest.run_to_core(PYTHON, [SCENARIO, built.moddir, "borrowed_tuple_item"],
                                    cwd=str(d), env={"PYTHONMALLOC": "debug"})
    return core


def pm(*args, timeout=600):
    p = subprocess.run([POSTMORTEM] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def cut(core, dest, fraction=None, size=None):
    with open(core, "rb") as f:
        data = f.read()
    n = size if size is not None else int(len(data) * fraction)
    with open(dest, "wb") as f:
        f.write(data[:n])
    return str(dest)


def test_bug_found_exits_1_and_names_its_core(bug_core):
    rc, out, err = pm(PYTHON, bug_core)
    assert rc == 1, out + err
    assert out.startswith("== core: %s\n" % bug_core)
    assert "verdict:  premature-free" in out and "status:   1 (refcount bug)" in out
    for noise in NOISE:
        assert noise not in out, (noise, out)
    rc, out, err = pm("--json", PYTHON, "--core", bug_core)
    assert rc == 1
    lines = out.splitlines()
    assert len(lines) == 1
    rep = json.loads(lines[0])
    assert (rep["core"], rep["status"], rep["verdict"]) == (bug_core, 1, "premature-free")
    assert rep["caveats"]["complete"] is True


@pytest.mark.parametrize("fraction", [0.10, 0.50, 0.90, 0.99])
def test_truncated_core_is_unknown_exit_2(bug_core, tmp_path, fraction):
    c = cut(bug_core, tmp_path / "core.cut", fraction)
    rc, out, err = pm("--json", PYTHON, c)
    assert rc == 2, out + err
    rep = json.loads(out)
    assert rep["verdict"] == "unknown" and rep["caveats"]["truncated"]
    assert "truncated" in rep["summary"]
    assert rep.get("verdict_if_complete") in ("premature-free", "not-a-refcount-bug")
    rc, text, err = pm(PYTHON, c)
    assert rc == 2 and "verdict:  unknown" in text and "truncated" in text
    assert "not traced" not in text
    for noise in NOISE:
        assert noise not in text, (noise, text)


def test_directory_is_json_lines_with_junk(bug_core, tmp_path):
    shutil.copy(bug_core, tmp_path / "core.1")
    cut(bug_core, tmp_path / "core.2", 0.5)
    shutil.copy("/etc/passwd", tmp_path / "core.junk")
    with open(tmp_path / "core.random", "wb") as f:
        f.write(os.urandom(4096))
    rc, out, err = pm("--json", PYTHON, str(tmp_path))
    assert rc == 1, out + err
    reps = [json.loads(line) for line in out.splitlines()]
    by = {os.path.basename(r["core"]): r for r in reps}
    assert sorted(by) == ["core.1", "core.2", "core.junk", "core.random"]
    assert by["core.1"]["status"] == 1 and by["core.2"]["status"] == 2
    assert by["core.junk"]["status"] == 3 and "not a core" in by["core.junk"]["error"]
    assert by["core.random"]["status"] == 3


def test_not_a_core_exits_3(tmp_path):
    for junk in ("/etc/passwd", PYTHON):
        rc, out, err = pm("--json", PYTHON, junk)
        assert rc == 3 and json.loads(out)["error"].startswith("not a core file")
    rc, out, err = pm(PYTHON)
    assert rc == 3 and "Usage" in err
    rc, out, err = pm(PYTHON, str(tmp_path / "missing"))
    assert rc == 3 and "no such core" in err


def test_core_named_like_a_pid(bug_core, tmp_path):
    """A core file named 1 (init's PID): read as the core, gdb never attaches."""
    c = str(tmp_path / "1")
    shutil.copy(bug_core, c)
    rc, out, err = pm("--json", PYTHON, c, timeout=300)
    assert rc == 1 and json.loads(out)["verdict"] == "premature-free", out + err


def test_wrong_interpreter_refused(bug_core):
    if not os.path.exists(OTHER):
        pytest.skip("no %s" % OTHER)
    rc, out, err = pm("--json", OTHER, bug_core)
    rep = json.loads(out)
    assert rc == 3 and "this core was made by %s" % PYTHON in rep["error"]


def test_wrong_interpreter_refused_by_why(bug_core):
    """pyref why in gdb refuses the core of another interpreter, as show and leaks do."""
    if not os.path.exists(OTHER):
        pytest.skip("no %s" % OTHER)
    out = pyreftest.gdb_batch(["pyref why", "pyref why --json"], [OTHER, bug_core])
    assert out.count("pyref: this core was made by %s" % PYTHON) == 2, out
    assert "verdict" not in out


def test_wrapper_script_resolved(bug_core, tmp_path):
    shim = tmp_path / "python3"
    shim.write_text('#!/bin/sh\nexec %s "$@"\n' % PYTHON)
    shim.chmod(0o755)
    rc, out, err = pm(str(shim), bug_core)
    assert rc == 1 and "is a wrapper script; using the interpreter it runs, %s" % PYTHON in out
    bad = tmp_path / "broken"
    bad.write_text("#!/bin/sh\nexit 1\n")
    bad.chmod(0o755)
    rc, out, err = pm(str(bad), bug_core)
    assert rc == 3 and "sys.executable" in err and "Traceback" not in err
