"""Each documented way of building an extension with pyref, on an unchanged project
(tests/ext/routes): plain gcc, setuptools (`setup.py build_ext` with CFLAGS/LDFLAGS from
pyref-config), meson (`dependency('pyref')` through pyref.pc) and meson-python (the same
meson.build through `pip wheel --no-build-isolation`). A route passes when the module
imports, runs, and its own process's ring holds exactly the transitions it made at
routesext.c: the shim was first on the include path and libpyref was linked and loaded.
A route whose tools are missing is skipped with the reason; `make deps` installs them."""
import glob
import os
import shutil
import subprocess
import zipfile

import pytest

import pyreftest

PROJECT = os.path.join(pyreftest.ROOT, "tests", "ext", "routes")
DRIVER = os.path.join(PROJECT, "driver.py")
CHURN = 7  # INCREF/DECREF pairs the driver asks for: 2 * CHURN records expected
SYSTEM_PYTHONS = [pytest.param("/usr/bin/python3", id="python3"),
                  pytest.param("/usr/bin/python3.11d", id="python3.11d")]


def config(*args, pyref_config=pyreftest.PYREF_CONFIG):
    return subprocess.check_output([pyref_config] + list(args), text=True).strip()


def copy_project(tmp_path):
    dst = tmp_path / "routes"
    shutil.copytree(PROJECT, dst, ignore=shutil.ignore_patterns("build", "*.so", "dist"))
    return dst


def recorded(python, moddir, gdbext=pyreftest.GDBEXT, cwd=None):
    """(libpyref path, records at routesext.c) as the driver reads them in its own process."""
    p = subprocess.run([python, DRIVER, str(moddir), gdbext, str(CHURN), "count"],
                       capture_output=True, text=True, timeout=120, cwd=cwd)
    assert p.returncode == 0, p.stdout + p.stderr
    out = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    return out["libpyref"], int(out["records"])


def run(cmd, cwd, env=None, timeout=600):
    full = dict(os.environ)
    full.update(env or {})
    p = subprocess.run(cmd, cwd=str(cwd), env=full, capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, "%s\n%s%s" % (" ".join(map(str, cmd)), p.stdout, p.stderr)
    return p.stdout + p.stderr


@pytest.fixture(scope="module", autouse=True)
def runtime():
    pyreftest.ensure_runtime()


# ---------------------------------------------------------------------------------------
# Plain gcc, as the README shows it
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("python", SYSTEM_PYTHONS)
def test_plain_gcc(python, tmp_path):
    suffix = subprocess.check_output(
        [python, "-c", "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"],
        text=True).strip()
    out = tmp_path / ("routesext" + suffix)
    cmd = (["gcc", "-g", "-O1", "-fPIC", "-shared"] +
           config("--python", python, "--cflags").split() +
           [os.path.join(PROJECT, "src", "routesext.c")] + config("--libs").split() +
           ["-o", str(out)])
    run(cmd, tmp_path)
    lib, n = recorded(python, tmp_path)
    assert lib == os.path.join(pyreftest.BUILD, "libpyref.so")
    assert n == 2 * CHURN


# ---------------------------------------------------------------------------------------
# setuptools: CFLAGS="$(pyref-config --cflags)" LDFLAGS="$(pyref-config --libs)"
# ---------------------------------------------------------------------------------------
def _has_setuptools(python):
    return subprocess.run([python, "-c", "import setuptools"],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("python", SYSTEM_PYTHONS)
def test_setuptools(python, tmp_path):
    if not _has_setuptools(python):
        pytest.skip("setuptools is not importable by %s (make deps installs "
                    "python3-setuptools)" % python)
    proj = copy_project(tmp_path)
    # setuptools puts LDFLAGS before the objects: the --libs flags must keep libpyref even
    # so (gcc links --as-needed by default here).
    log = run([python, "setup.py", "build_ext", "--inplace"], proj,
              env={"CFLAGS": config("--cflags"), "LDFLAGS": config("--libs")})
    shim = os.path.join(pyreftest.ROOT, "c_helpers", "shim")
    compile_line = next(line for line in log.splitlines() if " -c src/routesext.c" in line)
    assert compile_line.index("-I" + shim) < compile_line.index("-I/usr/include/python3"), \
        "the shim must come before the interpreter's include directory"
    # setuptools sees src/ as the package directory and builds the module in place there.
    lib, n = recorded(python, proj / "src")
    assert lib == os.path.join(pyreftest.BUILD, "libpyref.so")
    assert n == 2 * CHURN


# ---------------------------------------------------------------------------------------
# meson and meson-python: dependency('pyref') found through an installed pyref.pc
# ---------------------------------------------------------------------------------------
def need_meson():
    missing = [t for t in ("meson", "ninja", "pkg-config") if shutil.which(t) is None]
    if missing:
        pytest.skip("%s not installed (make deps installs meson, ninja-build, pkgconf)"
                    % ", ".join(missing))


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """pyref installed into a temporary prefix (for its pyref.pc)."""
    root = tmp_path_factory.mktemp("prefix") / "usr"
    p = subprocess.run(["make", "-s", "-C", pyreftest.ROOT, "install", "PREFIX=%s" % root],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return root


def test_meson(prefix, tmp_path):
    need_meson()
    proj = copy_project(tmp_path)
    env = {"PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig")}
    run(["meson", "setup", "builddir", "-Dpyref=enabled"], proj, env=env)
    log = run(["meson", "compile", "-C", "builddir", "-v"], proj, env=env)
    compile_line = next(line for line in log.splitlines() if "routesext.c" in line
                        and " -c " in line)
    assert compile_line.index("-I%s/include/pyref/shim" % prefix) < \
        compile_line.index("-I/usr/include/python3"), compile_line
    lib, n = recorded("/usr/bin/python3", proj / "builddir")
    assert lib == str(prefix / "lib" / "libpyref.so")
    assert n == 2 * CHURN


def test_meson_python(prefix, tmp_path):
    need_meson()
    if subprocess.run(["/usr/bin/python3", "-c", "import mesonpy, pip"],
                      capture_output=True).returncode:
        pytest.skip("meson-python or pip not importable by /usr/bin/python3 (make deps "
                    "installs python3-mesonpy and python3-pip)")
    proj = copy_project(tmp_path)
    env = {"PKG_CONFIG_PATH": str(prefix / "lib" / "pkgconfig"),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    run(["/usr/bin/python3", "-m", "pip", "wheel", "--no-build-isolation", "--no-deps",
         "--no-index", "--no-cache-dir", "--config-settings=setup-args=-Dpyref=enabled",
         "-w", "dist", "."], proj, env=env)
    wheels = glob.glob(str(proj / "dist" / "routesext-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp_path / "site"
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(site)
    lib, n = recorded("/usr/bin/python3", site)
    assert lib == str(prefix / "lib" / "libpyref.so")
    assert n == 2 * CHURN
