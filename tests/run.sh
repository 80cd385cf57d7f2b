#!/usr/bin/env bash
# The project's test command, the one the README gives and CI runs:
#
#   1. installs what the end-to-end test needs (tests/e2e/setup.sh: a Python virtualenv from
#      PyPI, nginx from Debian's packages) and shows what it installed or found;
#   2. runs every test of every crate (`cargo test --workspace --no-fail-fast`: a failing crate
#      does not hide the others' results); extra arguments go to cargo test;
#   3. runs the preload module's Python tests (python/tests) with the e2e virtualenv;
#   4. says what the end-to-end test used (PostgreSQL or SQLite, nginx) and counts the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tests/e2e/setup.sh
mkdir -p target/e2e
rm -f target/e2e/summary target/e2e/summary-celery
log=target/test-output.log
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
echo
for summary in target/e2e/summary target/e2e/summary-celery; do
    if [ -f "$summary" ]; then
        cat "$summary"
    else
        echo "e2e: no summary in $summary (its test failed or did not run: see above)"
    fi
done
# The preload module's tests (python/tests, issue #11's prototype), with the e2e virtualenv's
# python: unittest's summary is counted with the crates'.
pylog=target/test-python.log
if ! target/e2e/venv/bin/python -m unittest discover -s python/tests 2>&1 | tee "$pylog"; then
    status=1
fi
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i
            if ($(i + 1) ~ /^failed/) f += $i
            if ($(i + 1) ~ /^ignored/) s += $i
        }
     }
     END { printf "%d %d %d\n", p, f, s }' "$log" >target/test-counts
read -r p f s <target/test-counts
# unittest: "Ran N tests", then "OK", "OK (skipped=K)" or "FAILED (failures=A, errors=B)".
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\}.*/\1/p' "$pylog" | tail -n 1)
pyfailed=$({ grep -o '\(failures\|errors\)=[0-9]*' "$pylog" || true; } | awk -F= '{ n += $2 } END { print n + 0 }')
pyskipped=$({ grep -o 'skipped=[0-9]*' "$pylog" || true; } | cut -d= -f2 | tail -n 1)
ran=${ran:-0} pyfailed=${pyfailed:-0} pyskipped=${pyskipped:-0}
if [ "$ran" -eq 0 ]; then
    echo "python: no test ran (see above)"
    pyfailed=1
fi
echo "python: $((ran - pyfailed - pyskipped)) passed, $pyfailed failed, $pyskipped skipped"
echo "all tests: $((p + ran - pyfailed - pyskipped)) passed, $((f + pyfailed)) failed, $((s + pyskipped)) skipped"
exit "$status"
