"""bin/pyref-run on python3.11d: a pytest suite with a leaky test fails (status 23) naming
the test and the leaking line, and the suite's singleton bug ("None's count fell"), and
passes (status 0) once the extension is built with its fix (-DFIXED); repetition tells a
leak from a cache; a plain script and an embedding C program keep their streams, arguments
and status; a crash prints pyref why's report; --suppress, --min-refs, --json, --junit.
Real gdb, interpreter, extension (tests/ext/leakcheck/)."""
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

import pyreftest

PYTHON = "/usr/bin/python3.11d"
HERE = os.path.join(pyreftest.ROOT, "tests", "ext", "leakcheck")
SRC = os.path.join(HERE, "leakcheck_ext.c")
LINES = pyreftest.marker_lines(SRC)
PYREF_RUN = os.path.join(pyreftest.ROOT, "bin", "pyref-run")
LEAKS_FOUND = 23


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """{"leaky": moddir, "fixed": moddir}: the extension built both ways."""
    out = {}
    for name, flags in (("leaky", ()), ("fixed", ("-DFIXED",))):
        d = str(tmp_path_factory.mktemp(name))
        pyreftest.build_ext(SRC, PYTHON, d, extra_cflags=flags)
        out[name] = d
    return out


def pyref_run(args, cwd, moddir, stdin="", options=()):
    env = dict(os.environ, PYTHONPATH=moddir, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([PYREF_RUN] + list(options) + ["--"] + args, cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=300)


@pytest.fixture
def suite(tmp_path):
    """The test suite, copied out of the source tree (whose conftest.py is not the
    suite's)."""
    d = tmp_path / "suite"
    shutil.copytree(os.path.join(HERE, "suite"), str(d))
    return str(d)


def test_pytest_leaky_test_named_with_its_line_then_clean_once_fixed(builds, suite, tmp_path):
    junit, js = str(tmp_path / "junit.xml"), str(tmp_path / "leaks.json")
    p = pyref_run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"], suite,
                  builds["leaky"], options=["--junit", junit, "--json", js])
    assert p.returncode == LEAKS_FOUND, p.stdout + p.stderr
    assert "3 passed" in p.stdout                      # pytest's own output, on stdout
    assert "pyref-run" not in p.stdout
    line = LINES["leak"]
    assert "test_things.py::test_leaky: 100 refs from leakcheck_ext.c:%d (Py_INCREF)" % line \
        in p.stderr, p.stderr
    # 100, give or take an object holding None that a collection during the call freed
    fell = re.search(r"test_things.py::test_parent: None's count fell by (\d+) ", p.stderr)
    assert fell and 100 <= int(fell.group(1)) <= 102, p.stderr
    assert "test_clean" not in p.stderr
    doc = json.load(open(js))
    assert doc["exit_status"] == LEAKS_FOUND and doc["program_status"] == 0
    rows = doc["leaks"]["tests"]["leaks"]
    assert [(r["test"], r["line"], r["count"]) for r in rows] == [
        ("test_things.py::test_leaky", line, 100)]
    assert doc["leaks"]["tests"]["drift"] == [
        {"test": "test_things.py::test_parent", "name": "None",
         "deltas": [-int(fell.group(1))]}]
    cases = {c.get("name"): c for c in ET.parse(junit).getroot()}
    assert cases["test_things.py::test_leaky"].find("failure") is not None
    assert "fell" not in cases["test_things.py::test_leaky"].find("failure").text
    assert cases["test_things.py::test_parent"].find("failure") is not None
    assert "test_things.py::test_clean" not in cases

    p = pyref_run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"], suite,
                  builds["fixed"], options=["--junit", junit])
    assert p.returncode == 0, p.stdout + p.stderr
    assert "3 passed" in p.stdout and "no leaks" in p.stderr, p.stderr
    assert [c.find("failure") for c in ET.parse(junit).getroot()] == [None]


def test_pytest_failure_status_passes_through(builds, suite):
    p = pyref_run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "clean",
                   "--collect-only", "--no-such-option"], suite, builds["fixed"])
    assert p.returncode == 4, p.stdout + p.stderr        # pytest's usage error


def test_repeat_reports_what_grows(builds, suite):
    p = pyref_run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"], suite,
                  builds["leaky"], options=["--repeat", "3"])
    assert p.returncode == LEAKS_FOUND, p.stderr
    assert "9 passed" in p.stdout
    assert "test_things.py::test_leaky: grows by 100 refs per run from leakcheck_ext.c:%d " \
        "(Py_INCREF) (runs: 100 100 100)" % LINES["leak"] in p.stderr, p.stderr
    runs = re.search(r"test_parent: None's count fell by \d+ in each run \((-\d+) (-\d+) "
                     r"(-\d+)\)", p.stderr)
    assert runs and all(100 <= -int(d) <= 102 for d in runs.groups()), p.stderr


def test_suppressions_and_min_refs(builds, suite, tmp_path):
    supp = tmp_path / "pyref.supp"
    supp.write_text("# the known one\nleak:leakcheck_ext.c:%d\n" % LINES["leak"])
    args = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "leaky"]
    p = pyref_run(args, suite, builds["leaky"], options=["--suppress", str(supp)])
    assert p.returncode == 0, p.stderr
    p = pyref_run(args, suite, builds["leaky"], options=["--min-refs", "101"])
    assert p.returncode == 0, p.stderr
    p = pyref_run(args, suite, builds["leaky"], options=["--min-refs", "100"])
    assert p.returncode == LEAKS_FOUND, p.stderr
    supp.write_text("leek:oops\n")
    p = pyref_run(args, suite, builds["leaky"], options=["--suppress", str(supp)])
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "pyref.supp:1: want leak:" in p.stderr


def test_plain_script_streams_arguments_and_status(builds, tmp_path):
    args = [PYTHON, os.path.join(HERE, "script.py"), "a b", "$HOME", "-x"]
    p = pyref_run(args, str(tmp_path), builds["leaky"], stdin="one\ntwo\n")
    assert p.stdout == "args ['a b', '$HOME', '-x']\nline one\nline two\n"
    assert p.stderr.startswith("to stderr\n"), p.stderr
    assert p.returncode == LEAKS_FOUND
    assert "2 unreleased references" in p.stderr and "leakcheck_ext.c:%d" % LINES["leak"] \
        in p.stderr
    p = pyref_run(args, str(tmp_path), builds["fixed"], stdin="one\n")
    assert (p.returncode, p.stdout) == (3, "args ['a b', '$HOME', '-x']\nline one\n")
    assert "no leaks" in p.stderr


def test_embedding_program(builds, tmp_path):
    exe = str(tmp_path / "embed")
    flags = subprocess.check_output(["python3.11d-config", "--cflags", "--embed",
                                     "--ldflags"], text=True).split()
    subprocess.check_call(["gcc", "-g", os.path.join(HERE, "embed.c"), "-o", exe] + flags)
    p = pyref_run([exe, "7"], str(tmp_path), builds["leaky"])
    assert p.stdout == "embedded: done\n"
    assert p.returncode == LEAKS_FOUND, p.stderr
    assert "stopped at Py_FinalizeEx" in p.stderr
    assert "7 unreleased references" in p.stderr, p.stderr
    p = pyref_run([exe, "7"], str(tmp_path), builds["fixed"])
    assert p.returncode == 5, p.stderr


def test_crash_prints_the_post_mortem_report(builds, tmp_path):
    p = pyref_run([PYTHON, "-c", "import leakcheck_ext; print('before'); "
                   "leakcheck_ext.crash()"], str(tmp_path), builds["leaky"])
    assert p.returncode == 128 + 11, p.stderr
    assert p.stdout == "before\n"
    assert "died of SIGSEGV" in p.stderr and "verdict:" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_without_a_traced_extension_the_status_is_the_programs(tmp_path):
    p = pyref_run([PYTHON, "-c", "import sys; sys.exit(7)"], str(tmp_path), "")
    assert p.returncode == 7
    assert "no leak check" in p.stderr and "no pyref ring" in p.stderr, p.stderr


def test_repeat_a_script_through_pyref_mark(builds, tmp_path):
    script = tmp_path / "loop.py"
    script.write_text("import leakcheck_ext\nfor _ in range(10):\n"
                      "    leakcheck_ext.remember(object())\nprint('ran')\n")
    p = pyref_run([PYTHON, "-m", "pyref_mark", str(script)], str(tmp_path), builds["leaky"],
                  options=["--repeat", "3"])
    assert p.stdout == "ran\n" * 3
    assert p.returncode == LEAKS_FOUND, p.stderr
    assert "loop.py: grows by 10 refs per run from leakcheck_ext.c:%d" % LINES["leak"] \
        in p.stderr, p.stderr
    p = pyref_run([PYTHON, "-m", "pyref_mark", str(script)], str(tmp_path), builds["fixed"],
                  options=["--repeat", "3"])
    assert p.returncode == 0, p.stderr


def test_installed_pyref_run(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["make", "-s", "-C", pyreftest.ROOT, "install", "PREFIX=%s" % prefix],
                   check=True, capture_output=True, timeout=300)
    moddir = str(tmp_path / "mod")
    os.mkdir(moddir)
    cfg = str(prefix / "bin" / "pyref-config")
    suffix = subprocess.check_output(
        [PYTHON, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        text=True).strip()
    subprocess.run(["gcc", "-g", "-O1", "-fPIC", "-shared"] +
                   subprocess.check_output([cfg, "--python", PYTHON, "--cflags"],
                                           text=True).split() +
                   [SRC, "-o", os.path.join(moddir, "leakcheck_ext" + suffix)] +
                   subprocess.check_output([cfg, "--libs"], text=True).split(), check=True)
    suite = tmp_path / "suite"
    shutil.copytree(os.path.join(HERE, "suite"), str(suite))
    p = subprocess.run([str(prefix / "bin" / "pyref-run"), "--", PYTHON, "-m", "pytest", "-q",
                        "-p", "no:cacheprovider", "-k", "leaky"], cwd=str(suite),
                       env=dict(os.environ, PYTHONPATH=moddir), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == LEAKS_FOUND, p.stderr
    assert "test_things.py::test_leaky: 100 refs" in p.stderr


def test_make_demo_leaks_prints_what_the_readme_shows():
    """The README's "Find the leaks in your test suite" transcript is demo/leaks/run.sh's:
    its by-test lines and exit statuses must still come out."""
    with open(os.path.join(pyreftest.ROOT, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Find the leaks in your test suite"):]
    section = section[:section.index("\n## ")]
    claims = [ln for ln in section.splitlines()
              if ln.startswith(("  tests/test_speedups.py::", "(exit status"))]
    assert len(claims) == 5, claims
    p = subprocess.run([os.path.join(pyreftest.ROOT, "demo", "leaks", "run.sh"), PYTHON],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert [c for c in claims if c not in out] == [], p.stdout
    assert [ln for ln in out if ln.startswith("(exit status")] == \
        ["(exit status 23)", "(exit status 23)", "(exit status 0)"]


@pytest.mark.skipif(not shutil.which("script"), reason="no script(1) to give it a terminal")
def test_on_a_terminal_the_program_reads_it(tmp_path):
    """Run from a terminal (script(1) makes one), the program reads its input from it:
    pyref-run makes the program's process group the terminal's foreground one."""
    prog = tmp_path / "ask.py"
    prog.write_text("import sys\nprint('tty', sys.stdin.isatty())\nprint('got', input())\n")
    cmd = "%s -- %s %s; echo status=$?" % (PYREF_RUN, PYTHON, prog)
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], input="bob\n",
                       capture_output=True, text=True, timeout=120)
    assert "tty True" in p.stdout and "got bob" in p.stdout, p.stdout + p.stderr
    assert "status=0" in p.stdout


def test_ring_option_sets_the_ring_size(builds, suite, tmp_path):
    js = str(tmp_path / "r.json")
    p = pyref_run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "leaky"],
                  suite, builds["leaky"], options=["--ring", "256", "--repeat", "3",
                                                   "--json", js])
    assert p.returncode == LEAKS_FOUND, p.stderr
    assert "caveat: the ring wrapped" in p.stderr, p.stderr
    assert json.load(open(js))["leaks"]["records"] == 256
    p = pyref_run(["true"], suite, "", options=["--ring", "300"])
    assert p.returncode == 2 and "power of two" in p.stderr


@pytest.mark.parametrize("version", pyreftest.every_version())
def test_a_script_on_each_interpreter(version, build_extension, tmp_path):
    """The plain script on every interpreter pyref supports: the leak named, the streams
    and the script's status kept, the program stopped before its teardown. gdb is the one
    the interpreter needs (GDB 18 and its debug-file directory for Debian unstable's)."""
    built = build_extension(SRC, version)
    info = pyreftest.interpreter_info(version)
    options = ["--gdb", pyreftest.gcore_gdb(version) or pyreftest.default_gdb()]
    for cmd in info.get("gdb_init", []):
        options += ["--gdb-init", cmd]
    args = [version, os.path.join(HERE, "script.py"), "x y"]
    p = pyref_run(args, str(tmp_path), built.moddir, stdin="1\n2\n3\n", options=options)
    assert p.stdout == "args ['x y']\nline 1\nline 2\nline 3\n", p.stdout + p.stderr
    assert p.returncode == LEAKS_FOUND, p.stderr
    assert "3 unreleased references" in p.stderr and \
        "leakcheck_ext.c:%d (remember)" % LINES["leak"] in p.stderr, p.stderr
    assert "stopped at Py_Exit" in p.stderr or "stopped at Py_FinalizeEx" in p.stderr
