#!/bin/sh
# make demo: build demoext with pyref's flags, crash each scenario, print pyref's report.
# Usage: demo/run.sh [PYTHON]   (default python3.11d; release builds run with
# PYTHONMALLOC=debug so that freed memory is poisoned and the crash is certain)
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
python=${1:-python3.11d}
out="$root/build/demo"
rm -rf "$out" && mkdir -p "$out"
suffix=$("$python" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
gcc -g -O1 -fPIC -shared $("$root/bin/pyref-config" --python "$python" --cflags) \
    "$root/demo/demoext.c" $("$root/bin/pyref-config" --libs) -o "$out/demoext$suffix" || exit 1
if "$python" -c "import sys; sys.exit(hasattr(sys, 'gettotalrefcount'))"; then
    export PYTHONMALLOC=debug
fi
pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null)
for s in borrowed_tuple_item borrowed_list_item_del decref_none stolen_then_decref \
         borrowed_across_gil_release correct null_deref; do
    d="$out/$s"; mkdir -p "$d"
    echo "### scenario: $s"
    case "$pattern" in
    \|*|*/*)  # cores do not land in the cwd: let gdb take one at the fatal signal
        gdb -batch -nx -ex 'handle SIGABRT stop nopass' -ex 'handle SIGSEGV stop nopass' \
            -ex run -ex "generate-core-file $d/core" \
            --args "$python" "$root/demo/scenario.py" "$out" "$s" >/dev/null 2>&1 ;;
    *)
        # an inner shell reaps the crash, so "Aborted (core dumped)" stays out of the report
        sh -c 'cd "$1" && ulimit -c unlimited && "$2" "$3" "$4" "$5"; exit 0' sh \
            "$d" "$python" "$root/demo/scenario.py" "$out" "$s" >/dev/null 2>&1 ;;
    esac
    core=$(ls "$d"/core* 2>/dev/null | head -n 1)
    if [ -z "$core" ]; then echo "(no core was written)"; continue; fi
    "$root/bin/pyref-postmortem" "$python" "$core" | sed 1d
    echo
done
