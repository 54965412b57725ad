#!/usr/bin/env bash
# The issuance benchmark on a simulated slow disk: every fsync, fdatasync and
# sync_file_range, in the bench and in the gate it starts, first waits
# MICROSECONDS (default 1000, a millisecond, as many real disks take to
# sync). This machine's own disk syncs in about 60 µs, faster than an
# exchange's CPU work, so there the store's group commit cannot show what
# it buys; here syncing is the limit, as the issue's target supposes.
#
#   benches/slow_sync.sh [MICROSECONDS=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
us=${1:-1000}
. benches/common.sh
scripts/setup
bench_install gcc
shim=${CARGO_TARGET_DIR:-target}/slow_sync.so
mkdir -p "$(dirname "$shim")"
gcc -O2 -shared -fPIC -o "$shim" benches/slow_sync/slow_sync.c -ldl
# Build first, so that the compiler does not run with the shim.
cargo build --release --quiet --bin tachi-gate
bench=$(cargo bench --bench issuance --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
echo "every sync waits ${us} µs first" >&2
SLOW_SYNC_US=$us LD_PRELOAD=$(realpath "$shim") "$bench" --bench
