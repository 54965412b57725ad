#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a measure of the
# proxies' own CPU work (user space) that, unlike requests/s, does not move
# with other load on the machine. Same set-up as benches/load.sh: an nginx
# upstream serving a small JSON, wrk with 4 connections.
#
#   b) bare Pingora passthrough     d) tachi-gate, guest
#   e) tachi-gate, valid key        f) tachi-gate, invalid key (401)
#   b') the passthrough with the gate's upstream read timeout (60 s, its
#       default), which b leaves unset: Pingora's own cost for that timer
#
# Usage: benches/profile.sh [SECONDS=6]
# Leaves the callgrind files in $KEEP (if set) for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-6}

. benches/common.sh
bench_setup wrk nginx valgrind

# With KEEP set, the callgrind files outlive the scratch directory.
bench_on_exit() {
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/cg.* "$KEEP"/ 2>/dev/null || true; fi
}

UP=18091 PP=18094 GATE=18095 PT=18096
upstream_nginx $UP
key=$(bench_key)
gate_conf 1

valgrind --tool=callgrind --callgrind-out-file="$work/cg.passthrough.%p" \
    "$passthrough" "127.0.0.1:$PP" "127.0.0.1:$UP" 1 >/dev/null 2>&1 & pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$work/cg.timed.%p" \
    "$passthrough" "127.0.0.1:$PT" "127.0.0.1:$UP" 1 60000 >/dev/null 2>&1 & pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$work/cg.gate.%p" \
    "$gate" --config "$work/gate.toml" --listen "127.0.0.1:$GATE" --upstream "127.0.0.1:$UP" \
    --data "$work/store" >/dev/null 2>&1 & pids+=($!)
# Under valgrind start-up is slow (the first run of a new build reads its debug info).
wait_port $PP 300; wait_port $PT 300; wait_port $GATE 300

# One measurement: zero the counters of process $1, run wrk, dump; prints Ir/request.
measure() { # pid name url [header]
    local pid=$1 name=$2 url=$3 hdr=${4:-X-Bench: 1}
    wrk -t1 -c4 -d2s -H "$hdr" "$url" >/dev/null # warm up
    callgrind_control -z "$pid" >/dev/null 2>&1
    local n
    n=$(wrk -t1 -c4 -d"${secs}s" -H "$hdr" "$url" | awk '/requests in/ {print $1}')
    callgrind_control --dump="$name" "$pid" >/dev/null 2>&1
    local dump
    dump=$(ls -t "$work"/cg.*."$pid".* | head -1)
    awk -v n="$n" '/^summary:/ {printf "%.0f", $2 / n}' "$dump"
}

b=$(measure "${pids[0]}" b "http://127.0.0.1:$PP/x")
bt=$(measure "${pids[1]}" bt "http://127.0.0.1:$PT/x")
d=$(measure "${pids[2]}" d "http://127.0.0.1:$GATE/x")
e=$(measure "${pids[2]}" e "http://127.0.0.1:$GATE/x" "Authorization: Bearer $key")
f=$(measure "${pids[2]}" f "http://127.0.0.1:$GATE/x" "Authorization: Bearer 0000000000000000000000000000000000000000")
printf "%-34s %22s\n" configuration "instructions/request"
printf "%-34s %22s\n" "b) bare Pingora passthrough" "$b" "b') b with a read timeout" "$bt" \
    "d) tachi-gate, guest" "$d" \
    "e) tachi-gate, valid key" "$e" "f) tachi-gate, invalid key (401)" "$f"
awk -v b="$b" -v bt="$bt" -v d="$d" -v e="$e" 'BEGIN {
    printf "d/b = %.2f   e/b = %.2f   (b/e = %.2f)\n", d/b, e/b, b/e
    printf "e/b\x27 = %.2f   (b\x27/e = %.2f)\n", e/bt, bt/e }'
