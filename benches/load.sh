#!/usr/bin/env bash
# Load benchmark, all on loopback, in one run with alternating rounds:
#   a) the upstream directly (nginx serving a small static JSON)
#   b) a bare Pingora passthrough proxy (examples/passthrough.rs), on the
#      same runtime as the gate: single-thread for one worker, work stealing
#      for more
#   s) at one worker only: b on Pingora's default, work-stealing runtime
#   c) nginx as a reverse proxy with auth_request to a separate auth endpoint
#   k) a Kong-like peer: nginx with a Lua key check against a shared-memory
#      table of key digests, setting the same identity headers (kong_like in
#      benches/common.sh)
#   d) tachi-gate, guest request      e) tachi-gate, valid Bearer key
#   j) e with a signed identity assertion ([identity] mode = "jwt"), from a
#      second gate process on its own store
#   f) tachi-gate, invalid key (401s)
# at 1 and 2 workers each, with the same connection count. Prints requests/s
# and p50/p99 latency (medians over rounds) and the ratios e/b, e/c, e/k and
# j/e, both as ratios of those medians and as medians of the ratios within
# each round, and e's p99 over k's.
#
# Usage: benches/load.sh [SECONDS_PER_RUN=5] [ROUNDS=3]
#   CONNS=32 to change connections, WORKERS="1 2" to change the worker counts run
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
rounds=${2:-3}
conns=${CONNS:-32}
worker_counts=${WORKERS:-1 2}

. benches/common.sh
bench_setup wrk nginx
bench_lua

UP=18081 AUTH=18082 NGX=18083 PP=18084 GATE=18085 PS=18086 GATEJ=18087 KNG=18088
upstream_nginx $UP
wait_port $UP

# One key in a fresh store, and one in the jwt gate's.
key=$(bench_key "$work/store")
jkey=$(bench_key "$work/store-jwt")
nginx_conf auth 1 "$(auth_server $AUTH "$key")"
wait_port $AUTH

# One wrk run: prints "requests/s p50_us p99_us".
run() { # url [header]
    local out
    if [ -n "${2:-}" ]; then
        out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency -H "$2" "$1")
    else
        out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$1")
    fi
    echo "$out" | awk '
        function us(v) { if (v ~ /us$/) return v+0; if (v ~ /ms$/) return v*1000; if (v ~ /s$/) return v*1000000; return v }
        /Requests\/sec/ { rps=$2 }
        /^ +50%/ { p50=us($2) }
        /^ +99%/ { p99=us($2) }
        END { printf "%.0f %.0f %.0f\n", rps, p50, p99 }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

printf "%-8s %-34s %12s %10s %10s\n" workers configuration "requests/s" "p50 µs" "p99 µs"
for workers in $worker_counts; do
    nginx_conf "proxy$workers" "$workers" "$(auth_proxy $NGX $UP $AUTH)"
    nginx_conf_write "kong$workers" "$workers" "$(kong_like $KNG $UP "$key")" "$KONG_MODULES"
    nginx -c "$work/nginx-kong$workers.conf"
    "$passthrough" "127.0.0.1:$PP" "127.0.0.1:$UP" "$workers" >/dev/null 2>&1 & pids+=($!)
    names=(a b c k d e j f)
    # With more than one worker the gate steals work too, and s would be b.
    if [ "$workers" = 1 ]; then
        "$passthrough" "127.0.0.1:$PS" "127.0.0.1:$UP" 1 steal >/dev/null 2>&1 & pids+=($!)
        wait_port $PS
        names=(a b s c k d e j f)
    fi
    gate_conf "$workers"
    "$gate" --config "$work/gate.toml" --listen "127.0.0.1:$GATE" --upstream "127.0.0.1:$UP" --data "$work/store" >/dev/null 2>&1 & pids+=($!)
    sed "s|^\[server\]\$|[server]\npublic_url = \"http://127.0.0.1:$GATEJ\"|" "$work/gate.toml" >"$work/gate-jwt.toml"
    printf '[identity]\nmode = "jwt"\n' >>"$work/gate-jwt.toml"
    "$gate" --config "$work/gate-jwt.toml" --listen "127.0.0.1:$GATEJ" --upstream "127.0.0.1:$UP" --data "$work/store-jwt" >/dev/null 2>&1 & pids+=($!)
    wait_port $NGX; wait_port $KNG; wait_port $PP; wait_port $GATE; wait_port $GATEJ

    declare -A rps p50 p99
    for n in "${names[@]}"; do rps[$n]=""; p50[$n]=""; p99[$n]=""; done
    for round in $(seq 1 "$rounds"); do
        for n in "${names[@]}"; do
            case $n in
                a) r=$(run "http://127.0.0.1:$UP/x") ;;
                b) r=$(run "http://127.0.0.1:$PP/x") ;;
                s) r=$(run "http://127.0.0.1:$PS/x") ;;
                c) r=$(run "http://127.0.0.1:$NGX/x" "Authorization: Bearer $key") ;;
                k) r=$(run "http://127.0.0.1:$KNG/x" "Authorization: Bearer $key") ;;
                d) r=$(run "http://127.0.0.1:$GATE/x") ;;
                e) r=$(run "http://127.0.0.1:$GATE/x" "Authorization: Bearer $key") ;;
                j) r=$(run "http://127.0.0.1:$GATEJ/x" "Authorization: Bearer $jkey") ;;
                f) r=$(run "http://127.0.0.1:$GATE/x" "Authorization: Bearer 0000000000000000000000000000000000000000") ;;
            esac
            read -r a1 a2 a3 <<<"$r"
            rps[$n]+="$a1 "; p50[$n]+="$a2 "; p99[$n]+="$a3 "
        done
    done
    declare -A med
    declare -A label=([a]="a) upstream directly" [b]="b) bare Pingora passthrough" [s]="s) b, work-stealing runtime" [c]="c) nginx + auth_request" [k]="k) Kong-like: nginx + Lua key-auth" [d]="d) tachi-gate, guest" [e]="e) tachi-gate, valid key" [j]="j) e, identity jwt" [f]="f) tachi-gate, invalid key (401)")
    for n in "${names[@]}"; do
        med[$n]=$(tr ' ' '\n' <<<"${rps[$n]}" | grep . | median)
        printf "%-8s %-34s %12s %10s %10s\n" "$workers" "${label[$n]}" "${med[$n]}" \
            "$(tr ' ' '\n' <<<"${p50[$n]}" | grep . | median)" "$(tr ' ' '\n' <<<"${p99[$n]}" | grep . | median)"
    done
    awk -v e="${med[e]}" -v b="${med[b]}" -v c="${med[c]}" -v k="${med[k]}" -v j="${med[j]}" -v w="$workers" \
        'BEGIN { printf "%-8s e/b = %.2f   e/c = %.2f   e/k = %.2f   j/e = %.3f   (ratios of the medians)\n", w, e/b, e/c, e/k, j/e }'
    # The same ratios taken within each round, where the runs compared are
    # seconds apart, then their median: less moved by the machine's speed
    # drifting from round to round.
    paired() { # numerator denominator
        paste -d' ' <(tr ' ' '\n' <<<"${rps[$1]}" | grep .) <(tr ' ' '\n' <<<"${rps[$2]}" | grep .) |
            awk '{ printf "%.4f\n", $1 / $2 }' | median
    }
    awk -v eb="$(paired e b)" -v ec="$(paired e c)" -v ek="$(paired e k)" -v je="$(paired j e)" -v w="$workers" \
        'BEGIN { printf "%-8s e/b = %.2f   e/c = %.2f   e/k = %.2f   j/e = %.3f   (medians of the ratios within each round)\n", w, eb, ec, ek, je }'
    p99_of() { tr ' ' '\n' <<<"${p99[$1]}" | grep . | median; }
    awk -v e="$(p99_of e)" -v k="$(p99_of k)" -v w="$workers" \
        'BEGIN { printf "%-8s p99 of e / p99 of k = %.2f\n", w, e/k }'
    if [ -n "${rps[s]:-}" ]; then
        awk -v bs="$(paired b s)" -v w="$workers" \
            'BEGIN { printf "%-8s b/s = %.2f   (the single-thread runtime against work stealing, within each round)\n", w, bs }'
    fi
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    pids=()
    nginx -c "$work/nginx-proxy$workers.conf" -s stop 2>/dev/null
    nginx -c "$work/nginx-kong$workers.conf" -s stop 2>/dev/null
    sleep 1
    unset rps p50 p99 med
done
