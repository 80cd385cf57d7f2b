#!/usr/bin/env bash
# The project's test command, the one the README gives and CI runs:
#
#   1. installs what the end-to-end test needs (tests/e2e/setup.sh: a Python virtualenv from
#      PyPI, nginx from Debian's packages) and shows what it installed or found;
#   2. runs every test of every crate (`cargo test --workspace --no-fail-fast`: a failing crate
#      does not hide the others' results); extra arguments go to cargo test;
#   3. says what the end-to-end test used (PostgreSQL or SQLite, nginx) and counts the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tests/e2e/setup.sh
mkdir -p target/e2e
rm -f target/e2e/summary
log=target/test-output.log
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
echo
if [ -f target/e2e/summary ]; then
    cat target/e2e/summary
else
    echo "e2e: no summary (it failed or did not run: see its output above)"
fi
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i
            if ($(i + 1) ~ /^failed/) f += $i
            if ($(i + 1) ~ /^ignored/) s += $i
        }
     }
     END { printf "all crates: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
