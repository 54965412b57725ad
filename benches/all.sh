#!/usr/bin/env bash
# Every benchmark of the README's "Performance" section, in turn, with the
# parameters its tables were made with: the criterion micro-benchmarks,
# durable issuance (also on a simulated disk that syncs in 1 ms), scale,
# the load benchmark at 1 and 2 workers, and instructions per request (20
# minutes on a 2-core VM, once built).
# Installs what it needs (cmake for the build; wrk, nginx and valgrind).
#
# Usage: benches/all.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup
for bench in micro issuance scale; do
    echo "== cargo bench --bench $bench" >&2
    cargo bench --quiet --bench "$bench"
done
echo "== benches/slow_sync.sh 1000" >&2
benches/slow_sync.sh 1000
echo "== benches/load.sh 3 15" >&2
benches/load.sh 3 15
echo "== benches/profile.sh" >&2
benches/profile.sh
