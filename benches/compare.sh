#!/usr/bin/env bash
# The gate against an earlier version of itself, in one run: builds REV (a
# commit, tag or branch) in its own worktree and target directory, starts
# both gates on copies of one store behind the same nginx upstream, and
# alternates wrk runs on them with the bare Pingora passthrough (b):
#   e) valid Bearer key, d) guest, for REV and for the working tree.
# Prints requests/s medians and the medians of the ratios within each
# round, which the machine's speed drifting between rounds moves least.
#
# Usage: benches/compare.sh REV [SECONDS_PER_RUN=3] [ROUNDS=10]
# The worktree stays in $TMPDIR (default /tmp) for the next run; remove it
# with `git worktree remove`.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: benches/compare.sh REV [SECONDS] [ROUNDS]}
secs=${2:-3}
rounds=${3:-10}

. benches/common.sh
bench_setup wrk nginx

# The earlier version, built once per commit and kept between runs.
commit=$(git rev-parse --verify "$rev^{commit}")
tree=${TMPDIR:-/tmp}/tachi-gate-compare-$commit
if [ ! -d "$tree" ]; then
    git worktree prune # a worktree deleted without `git worktree remove`
    git worktree add --detach -q "$tree" "$commit"
fi
# Built as its own Cargo.toml says: CARGO_PROFILE_* settings in the
# environment (to measure a build profile on the working tree) are for the
# working tree only.
profile_env=()
for v in $(env | sed -n 's/^\(CARGO_PROFILE_[A-Z0-9_]*\)=.*/\1/p'); do profile_env+=(-u "$v"); done
(cd "$tree" && env "${profile_env[@]}" CARGO_TARGET_DIR="$tree/target" cargo build --release --quiet --bin tachi-gate)
earlier=$tree/target/release/tachi-gate

UP=18281 PP=18284 NOW=18285 THEN=18286
# A process left on one of these ports would be measured in place of ours.
for port in $UP $PP $NOW $THEN; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use" >&2
        exit 1
    fi
done
upstream_nginx $UP
key=$(bench_key)
gate_conf 1
cp -r "$work/store" "$work/store-then"
"$passthrough" "127.0.0.1:$PP" "127.0.0.1:$UP" 1 >/dev/null 2>&1 & pids+=($!)
"$gate" --config "$work/gate.toml" --listen "127.0.0.1:$NOW" --upstream "127.0.0.1:$UP" \
    --data "$work/store" >/dev/null 2>&1 & pids+=($!)
"$earlier" --config "$work/gate.toml" --listen "127.0.0.1:$THEN" --upstream "127.0.0.1:$UP" \
    --data "$work/store-then" >/dev/null 2>&1 & pids+=($!)
wait_port $PP; wait_port $NOW; wait_port $THEN

# One wrk run: prints requests/s, or stops the bench if any answer was not a
# 2xx (a gate refusing the key would otherwise look fast) or wrk failed.
rps() { # [wrk options] url
    local out r
    out=$(wrk -t1 -c32 -d"${secs}s" "$@") || { echo "wrk failed on ${*: -1}" >&2; exit 1; }
    if grep -q "Non-2xx" <<<"$out"; then
        echo "non-2xx answers from ${*: -1}:" >&2
        echo "$out" >&2
        exit 1
    fi
    r=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    [ -n "$r" ] || { echo "no result from ${*: -1}" >&2; exit 1; }
    echo "$r"
}
auth="Authorization: Bearer $key"
: >"$work/rounds"
for round in $(seq 1 "$rounds"); do
    b=$(rps "http://127.0.0.1:$PP/x")
    # Which version goes first alternates, so that drift within a round
    # favours neither.
    if [ $((round % 2)) -eq 1 ]; then
        et=$(rps -H "$auth" "http://127.0.0.1:$THEN/x"); en=$(rps -H "$auth" "http://127.0.0.1:$NOW/x")
        dt=$(rps "http://127.0.0.1:$THEN/x"); dn=$(rps "http://127.0.0.1:$NOW/x")
    else
        en=$(rps -H "$auth" "http://127.0.0.1:$NOW/x"); et=$(rps -H "$auth" "http://127.0.0.1:$THEN/x")
        dn=$(rps "http://127.0.0.1:$NOW/x"); dt=$(rps "http://127.0.0.1:$THEN/x")
    fi
    echo "$b $et $en $dt $dn" >>"$work/rounds"
done
echo "1 worker, $rounds rounds of ${secs} s; earlier = $rev ($commit)"
awk '
    function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
    }
    { n++; b[n]=$1; et[n]=$2; en[n]=$3; dt[n]=$4; dn[n]=$5
      r1[n]=$2/$1; r2[n]=$3/$1; r3[n]=$3/$2; r4[n]=$5/$4 }
    END {
        printf "requests/s (medians): b %.0f   e earlier %.0f   e now %.0f   d earlier %.0f   d now %.0f\n",
            median(b, n), median(et, n), median(en, n), median(dt, n), median(dn, n)
        printf "within rounds (medians): e/b earlier %.3f   e/b now %.3f   e now/earlier %.3f   d now/earlier %.3f\n",
            median(r1, n), median(r2, n), median(r3, n), median(r4, n)
    }' "$work/rounds"
