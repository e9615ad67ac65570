#!/bin/sh
# make demo-leaks: build the demo package's extension (demo/leaks/_speedups.c) with pyref's
# flags, run its test suite under bin/pyref-run (which test leaks, from which line), then
# with --repeat 3 (what grows with each run), then the fixed build (-DFIXED: status 0).
# Usage: demo/leaks/run.sh [PYTHON]   (default python3.11d)
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
python=${1:-python3.11d}
out="$root/build/demo-leaks"
rm -rf "$out" && mkdir -p "$out/leaky" "$out/fixed"
suffix=$("$python" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
for v in leaky fixed; do
    gcc -g -O1 -fPIC -shared $("$root/bin/pyref-config" --python "$python" --cflags) \
        $([ $v = fixed ] && echo -DFIXED) "$root/demo/leaks/_speedups.c" \
        $("$root/bin/pyref-config" --libs) -o "$out/$v/_speedups$suffix" || exit 1
done
cd "$root/demo/leaks" || exit 1
export PYTHONDONTWRITEBYTECODE=1
run() {  # run BUILD PYREF-RUN-OPTIONS...: the command as a user types it, then its output
    v=$1; shift
    echo "\$ pyref-run${*:+ $*} -- $python -m pytest -q"
    PYTHONPATH="$out/$v" "$root/bin/pyref-run" "$@" -- "$python" -m pytest -q -p no:cacheprovider 2>&1
    echo "(exit status $?)"
    echo
}
echo "### the leaky build"
run leaky
echo "### each test 3 times: only what grows with each run"
run leaky --repeat 3
echo "### the fixed build (-DFIXED)"
run fixed
