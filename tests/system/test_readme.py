"""The README's build lines, as written, from a clean clone: the shell blocks of its "Build
an extension with tracing" section are taken from the README itself (the clone's), so a
README whose lines stop working fails here. Each route runs in `sh -e` with the install
block first (in the clone), then its own blocks in a copy of an ordinary project
(tests/ext/myext: myext.c and setup.py, with the README's meson and pyproject files), with
PATH and HOME as a fresh Debian user has them: /usr/bin and /bin only (no pyenv), HOME a
new directory. The README's own `pyref-config --check` line must say "traced", and the
module must import and run. A route whose tools are missing is skipped with the reason
(make deps installs them)."""
import glob
import os
import re
import shutil
import subprocess
import zipfile

import pytest

import pyreftest

PROJECT = os.path.join(pyreftest.ROOT, "tests", "ext", "myext")
SECTION = "## Build an extension with tracing"


def blocks(readme):
    """[(info, text)] of the fenced code blocks of the build section."""
    section = readme[readme.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    return re.findall(r"^```(\w*)\n(.*?)^```$", section, re.M | re.S)


def block(found, info, must):
    """The one block of kind `info` containing `must` (the test fails when the README lost
    it)."""
    hits = [text for kind, text in found if kind == info and must in text]
    assert len(hits) == 1, "README build section: %d %s blocks with %r" % (len(hits), info,
                                                                         must)
    return hits[0]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A clean clone of this repository (its committed HEAD), and the README's blocks."""
    if not os.path.isdir(os.path.join(pyreftest.ROOT, ".git")) and \
            not os.path.isfile(os.path.join(pyreftest.ROOT, ".git")):
        pytest.skip("not a git checkout: nothing to clone")
    root = tmp_path_factory.mktemp("readme")
    dst = root / "pyref"
    subprocess.run(["git", "clone", "-q", pyreftest.ROOT, str(dst)], check=True, timeout=300)
    with open(dst / "README.md") as f:
        found = blocks(f.read())
    home = root / "home"
    home.mkdir()
    return dst, found, home


def env_of(home):
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def project(tmp_path, found, files):
    """A copy of tests/ext/myext with the README's `files` blocks ((kind, name): the
    block that starts with "# name") written into it."""
    d = tmp_path / "myext"
    shutil.copytree(PROJECT, d)
    for kind, name in files:
        (d / name).write_text(block(found, kind, "# " + name))
    return d


def run_route(clone, tmp_path, *must, files=()):
    """Runs the install block in the clone, then the blocks containing each of `must` in a
    fresh copy of the project; returns (project dir, output)."""
    dst, found, home = clone
    proj = project(tmp_path, found, files)
    script = 'cd "$1"\n%s\ncd "$2"\n%s' % (block(found, "sh", "make install"),
                                          "\n".join(block(found, "sh", m) for m in must))
    p = subprocess.run(["sh", "-ec", script, "sh", str(dst), str(proj)], env=env_of(home),
                       capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode == 0, "%s\n---\n%s" % (script, out)
    return proj, out


def imports(moddir, home):
    """The built module imports and runs, with the environment of the route."""
    p = subprocess.run(["python3", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "import myext; myext.touch(object()); print('ran')", str(moddir)],
                       env=env_of(home), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "ran\n", p.stdout + p.stderr


def traced(out):
    assert re.search(r"^\S*myext\S*\.so: traced: \d+ call sites? recorded into the ring of "
                     r"\S+/\.local/lib/libpyref\.so$", out, re.M), out


def test_gcc(clone, tmp_path):
    if not os.path.exists("/usr/bin/python3-config"):
        pytest.skip("python3-config not installed (make deps installs python3-dev)")
    proj, out = run_route(clone, tmp_path, "gcc ")
    traced(out)
    imports(proj, clone[2])


def test_setuptools(clone, tmp_path):
    if subprocess.run(["/usr/bin/python3", "-c", "import setuptools"],
                      capture_output=True).returncode:
        pytest.skip("setuptools not importable by /usr/bin/python3 (make deps installs "
                    "python3-setuptools)")
    proj, out = run_route(clone, tmp_path, "setup.py build_ext")
    traced(out)
    imports(proj, clone[2])


def test_meson(clone, tmp_path):
    missing = [t for t in ("meson", "ninja", "pkg-config") if shutil.which(t) is None]
    if missing:
        pytest.skip("%s not installed (make deps installs meson, ninja-build, pkgconf)"
                    % ", ".join(missing))
    if subprocess.run(["/usr/bin/python3", "-c", "import mesonpy, pip"],
                      capture_output=True).returncode:
        pytest.skip("the README's meson-python line needs python3-mesonpy and pip (make "
                    "deps installs them)")
    proj, out = run_route(clone, tmp_path, "meson setup", "pip wheel",
                          files=[("meson", "meson.build"), ("meson", "meson_options.txt"),
                                 ("toml", "pyproject.toml")])
    traced(out)
    imports(proj / "build", clone[2])
    wheels = glob.glob(str(proj / "dist" / "myext-*.whl"))
    assert len(wheels) == 1, out
    site = tmp_path / "site"
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(site)
    check = subprocess.run([str(clone[2] / ".local" / "bin" / "pyref-config"), "--check"] +
                           glob.glob(str(site / "myext*.so")), capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    traced(check.stdout)
    imports(site, clone[2])
