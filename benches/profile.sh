#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: a measure of the
# proxies' own CPU work (user space) that, unlike requests/s, does not move
# with other load on the machine. Same set-up as benches/load.sh: an nginx
# upstream serving a small JSON, wrk with 4 connections.
#
#   b) bare Pingora passthrough     d) tachi-gate, guest
#   e) tachi-gate, valid key        f) tachi-gate, invalid key (401)
#
# Usage: benches/profile.sh [SECONDS=6]
# Leaves the callgrind files in $KEEP (if set) for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-6}

. benches/common.sh
bench_setup wrk nginx valgrind

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/up.conf" ] && nginx -c "$work/up.conf" -s stop 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/cg.* "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

UP=18091 PP=18094 GATE=18095
cat >"$work/up.conf" <<CONF
worker_processes 1;
pid $work/up.pid;
error_log $work/up.err warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/b; proxy_temp_path $work/p; fastcgi_temp_path $work/f;
    uwsgi_temp_path $work/u; scgi_temp_path $work/s;
    server { listen 127.0.0.1:$UP; location / { default_type application/json;
        return 200 '{"success":true,"description":"ok","body":{}}'; } }
}
CONF
nginx -c "$work/up.conf"

key=$("$gate" --data "$work/store" keys create --user 1 --permissions submit_score --identifier bench 2>/dev/null \
    | sed -n 's/.*"token": "\([0-9a-f]*\)".*/\1/p')
printf '[server]\nadmin_listen = ""\nthreads = 1\n[limits]\nenabled = false\n[log]\nlevel = "error"\n' >"$work/gate.toml"

valgrind --tool=callgrind --callgrind-out-file="$work/cg.passthrough.%p" \
    "$passthrough" "127.0.0.1:$PP" "127.0.0.1:$UP" 1 >/dev/null 2>&1 & pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$work/cg.gate.%p" \
    "$gate" --config "$work/gate.toml" --listen "127.0.0.1:$GATE" --upstream "127.0.0.1:$UP" \
    --data "$work/store" >/dev/null 2>&1 & pids+=($!)
for port in $PP $GATE; do
    for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done
done

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
d=$(measure "${pids[1]}" d "http://127.0.0.1:$GATE/x")
e=$(measure "${pids[1]}" e "http://127.0.0.1:$GATE/x" "Authorization: Bearer $key")
f=$(measure "${pids[1]}" f "http://127.0.0.1:$GATE/x" "Authorization: Bearer 0000000000000000000000000000000000000000")
printf "%-34s %22s\n" configuration "instructions/request"
printf "%-34s %22s\n" "b) bare Pingora passthrough" "$b" "d) tachi-gate, guest" "$d" \
    "e) tachi-gate, valid key" "$e" "f) tachi-gate, invalid key (401)" "$f"
awk -v b="$b" -v d="$d" -v e="$e" 'BEGIN { printf "d/b = %.2f   e/b = %.2f   (b/e = %.2f)\n", d/b, e/b, b/e }'
