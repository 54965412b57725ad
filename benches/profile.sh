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
#   c) nginx with auth_request, as in benches/load.sh: its proxy process,
#      and with its auth endpoint's process added (c+)
#   k) the Kong-like peer of benches/load.sh (nginx + Lua key-auth)
#   ej) e with the signed identity assertion ([identity] mode = "jwt")
#   en) e with CORS off (server.cors_origins = []; e has the default, on)
#   ep) e on a PostgreSQL store ([store] backend = "postgres"), the key held
#       in memory after its first check (TACHI_GATE_TEST_POSTGRES_URL,
#       default postgres://postgres@127.0.0.1:5432/test, in a schema of
#       its own that is dropped afterwards)
#
# and the instruction budget: e/b at most 1.10, and each optional feature
# at most 1.02 over the same gate without it (ej/e, e/en, ep/e).
#
# Usage: benches/profile.sh [SECONDS=6]
# Leaves the callgrind files in $KEEP (if set) for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-6}

. benches/common.sh
bench_setup wrk nginx valgrind
bench_lua
command -v psql >/dev/null 2>&1 || bench_install postgresql-client

# With KEEP set, the callgrind files outlive the scratch directory.
bench_on_exit() {
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$work"/cg.* "$KEEP"/ 2>/dev/null || true; fi
    if [ -n "${schema:-}" ]; then psql -q "$pg" -c "DROP SCHEMA IF EXISTS $schema CASCADE" 2>/dev/null || true; fi
}

UP=18091 AUTH=18092 NGX=18093 PP=18094 GATE=18095 PT=18096 GJ=18097 GN=18098 KNG=18099 GP=18100
upstream_nginx $UP
key=$(bench_key)
jkey=$(bench_key "$work/store-jwt")
nkey=$(bench_key "$work/store-nocors")
gate_conf 1
sed "s|^\[server\]\$|[server]\npublic_url = \"http://127.0.0.1:$GJ\"|" "$work/gate.toml" >"$work/gate-jwt.toml"
printf '[identity]\nmode = "jwt"\n' >>"$work/gate-jwt.toml"
sed "s|^\[server\]\$|[server]\ncors_origins = []|" "$work/gate.toml" >"$work/gate-nocors.toml"
# The PostgreSQL gate: a schema of its own, its key made through the store.
pg=${TACHI_GATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
schema=tg_bench_$$
psql -q "$pg" -c "CREATE SCHEMA $schema"
cp "$work/gate.toml" "$work/gate-pg.toml"
sep='?'; case $pg in *\?*) sep='&' ;; esac
printf '[store]\nbackend = "postgres"\nurl = "%s%soptions=-c%%20search_path%%3D%s"\n' "$pg" "$sep" "$schema" >>"$work/gate-pg.toml"
pkey=$("$gate" --config "$work/gate-pg.toml" keys create --user 1 --permissions submit_score --identifier bench 2>/dev/null \
    | sed -n 's/.*"token": "\([0-9a-f]*\)".*/\1/p')

valgrind --tool=callgrind --callgrind-out-file="$work/cg.passthrough.%p" \
    "$passthrough" "127.0.0.1:$PP" "127.0.0.1:$UP" 1 >/dev/null 2>&1 & pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$work/cg.timed.%p" \
    "$passthrough" "127.0.0.1:$PT" "127.0.0.1:$UP" 1 60000 >/dev/null 2>&1 & pids+=($!)
valgrind --tool=callgrind --callgrind-out-file="$work/cg.gate.%p" \
    "$gate" --config "$work/gate.toml" --listen "127.0.0.1:$GATE" --upstream "127.0.0.1:$UP" \
    --data "$work/store" >/dev/null 2>&1 & pids+=($!)
# c's two nginx processes, each one process (no master) in the foreground.
nginx_conf_write cauth 1 "$(auth_server $AUTH "$key")" "daemon off; master_process off;"
nginx_conf_write cproxy 1 "$(auth_proxy $NGX $UP $AUTH)" "daemon off; master_process off;"
for n in cauth cproxy; do
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n.%p" \
        nginx -c "$work/nginx-$n.conf" >/dev/null 2>&1 & pids+=($!)
done
# pids 5 to 8: the gates with one optional feature changed, then k.
for g in "jwt $GJ" "nocors $GN" "pg $GP"; do
    read -r name port <<<"$g"
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.gate-$name.%p" \
        "$gate" --config "$work/gate-$name.toml" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$UP" \
        --data "$work/store-$name" >/dev/null 2>&1 & pids+=($!)
done
nginx_conf_write kong 1 "$(kong_like $KNG $UP "$key")" "$KONG_MODULES
daemon off; master_process off;"
valgrind --tool=callgrind --callgrind-out-file="$work/cg.kong.%p" \
    nginx -c "$work/nginx-kong.conf" >/dev/null 2>&1 & pids+=($!)
# Under valgrind start-up is slow (the first run of a new build reads its debug info).
for p in $PP $PT $GATE $AUTH $NGX $GJ $GN $GP $KNG; do wait_port "$p" 300; done

# One measurement: zero the counters of the processes in $1 (a
# comma-separated list), run wrk, dump; prints their Ir/request, summed.
# Every answer must be the one expected (f's 401s aside): a run with other
# statuses would count something else, so it stops the script.
measure() { # pids name url [header]
    local name=$2 url=$3 hdr=${4:-X-Bench: 1} pid out n dumps=()
    wrk -t1 -c4 -d2s -H "$hdr" "$url" >/dev/null # warm up
    for pid in ${1//,/ }; do callgrind_control -z "$pid" >/dev/null 2>&1; done
    out=$(wrk -t1 -c4 -d"${secs}s" -H "$hdr" "$url")
    if [ "$name" != f ] && grep -q "Non-2xx" <<<"$out"; then
        echo "$name: some answers were not 2xx:" >&2
        echo "$out" >&2
        exit 1
    fi
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    for pid in ${1//,/ }; do
        callgrind_control --dump="$name" "$pid" >/dev/null 2>&1
        dumps+=("$(ls -t "$work"/cg.*."$pid".* | head -1)")
    done
    awk -v n="$n" '/^summary:/ {t += $2} END {printf "%.0f", t / n}' "${dumps[@]}"
}

b=$(measure "${pids[0]}" b "http://127.0.0.1:$PP/x")
bt=$(measure "${pids[1]}" bt "http://127.0.0.1:$PT/x")
d=$(measure "${pids[2]}" d "http://127.0.0.1:$GATE/x")
e=$(measure "${pids[2]}" e "http://127.0.0.1:$GATE/x" "Authorization: Bearer $key")
f=$(measure "${pids[2]}" f "http://127.0.0.1:$GATE/x" "Authorization: Bearer 0000000000000000000000000000000000000000")
ej=$(measure "${pids[5]}" ej "http://127.0.0.1:$GJ/x" "Authorization: Bearer $jkey")
en=$(measure "${pids[6]}" en "http://127.0.0.1:$GN/x" "Authorization: Bearer $nkey")
ep=$(measure "${pids[7]}" ep "http://127.0.0.1:$GP/x" "Authorization: Bearer $pkey")
k=$(measure "${pids[8]}" k "http://127.0.0.1:$KNG/x" "Authorization: Bearer $key")
c=$(measure "${pids[4]}" c "http://127.0.0.1:$NGX/x" "Authorization: Bearer $key")
cplus=$(measure "${pids[4]},${pids[3]}" cplus "http://127.0.0.1:$NGX/x" "Authorization: Bearer $key")
printf "%-34s %22s\n" configuration "instructions/request"
printf "%-34s %22s\n" "b) bare Pingora passthrough" "$b" "b') b with a read timeout" "$bt" \
    "d) tachi-gate, guest" "$d" \
    "e) tachi-gate, valid key" "$e" "ej) e, identity jwt" "$ej" "en) e, CORS off" "$en" "ep) e, PostgreSQL store" "$ep" \
    "f) tachi-gate, invalid key (401)" "$f" \
    "c) nginx + auth_request, proxy" "$c" "c+) c's proxy and auth endpoint" "$cplus" \
    "k) Kong-like: nginx + Lua key-auth" "$k"
awk -v b="$b" -v bt="$bt" -v d="$d" -v e="$e" 'BEGIN {
    printf "d/b = %.2f   e/b = %.2f   (b/e = %.2f)\n", d/b, e/b, b/e
    printf "e/b\x27 = %.2f   (b\x27/e = %.2f)\n", e/bt, bt/e }'
awk -v b="$b" -v c="$c" -v cp="$cplus" -v e="$e" 'BEGIN {
    printf "e/c = %.2f   e/c+ = %.2f   b/c = %.2f   b/c+ = %.2f\n", e/c, e/cp, b/c, b/cp }'
awk -v b="$b" -v e="$e" -v ej="$ej" -v en="$en" -v ep="$ep" -v k="$k" 'BEGIN {
    printf "e/k = %.2f\n", e/k
    printf "budget: e/b = %.3f (at most 1.10)   ej/e = %.3f   e/en = %.3f   ep/e = %.3f (each at most 1.02)\n", e/b, ej/e, e/en, ep/e }'
