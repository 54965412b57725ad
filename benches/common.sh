# Shared set-up of the shell benchmarks; source it from the repository root.

# bench_setup TOOL...: installs the build's needs (scripts/setup) and any
# missing Debian packages named, then builds the release gate and the bare
# Pingora passthrough (in $CARGO_TARGET_DIR if set, so that another build,
# say another commit or profile, can be measured); sets $gate and
# $passthrough to the two binaries. Also makes the scratch directory $work
# and the list $pids of processes started, both cleaned up on exit (after
# bench_on_exit, if the script defines it).
bench_setup() {
    scripts/setup
    bench_install "$@"
    cargo build --release --quiet --bin tachi-gate --example passthrough
    gate=${CARGO_TARGET_DIR:-target}/release/tachi-gate
    passthrough=${CARGO_TARGET_DIR:-target}/release/examples/passthrough
    work=$(mktemp -d)
    pids=()
    trap bench_cleanup EXIT
}

# bench_install TOOL...: installs with apt-get each Debian package named
# whose command of the same name is missing.
bench_install() {
    local need=() tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
    done
    if [ ${#need[@]} -gt 0 ]; then
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}

# bench_lua: installs Debian's Lua module for nginx (for kong_like) if missing.
bench_lua() {
    [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libnginx-mod-http-lua >/dev/null
}

bench_cleanup() {
    local p c
    for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done
    # Let them go (valgrind takes a moment), so that the next run finds its ports free.
    for p in "${pids[@]:-}"; do wait "$p" 2>/dev/null || true; done
    for c in "$work"/nginx-*.conf; do [ -f "$c" ] && nginx -c "$c" -s stop 2>/dev/null || true; done
    if declare -F bench_on_exit >/dev/null; then bench_on_exit; fi
    rm -rf "$work"
}

# nginx_conf NAME WORKERS HTTP-BLOCK-BODY: starts an nginx with that config.
nginx_conf() {
    nginx_conf_write "$@"
    nginx -c "$work/nginx-$1.conf"
}

# nginx_conf_write NAME WORKERS HTTP-BLOCK-BODY [MAIN-DIRECTIVES]: writes
# $work/nginx-NAME.conf without starting it (to run it some other way, say
# in the foreground under valgrind: "daemon off; master_process off;").
nginx_conf_write() {
    cat >"$work/nginx-$1.conf" <<CONF
worker_processes $2;
${4:-}
pid $work/nginx-$1.pid;
error_log $work/nginx-$1.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $work/body-$1;
    proxy_temp_path $work/proxy-$1;
    fastcgi_temp_path $work/fcgi-$1;
    uwsgi_temp_path $work/uwsgi-$1;
    scgi_temp_path $work/scgi-$1;
    $3
}
CONF
}

# auth_server PORT KEY: the http block of c's auth endpoint, which answers
# 204 to "Authorization: Bearer KEY" and 401 to anything else.
auth_server() {
    echo "server { listen 127.0.0.1:$1; location / { if (\$http_authorization != \"Bearer $2\") { return 401; } return 204; } }"
}

# auth_proxy PORT UPSTREAM-PORT AUTH-PORT: the http block of c, nginx as a
# reverse proxy that asks the auth endpoint about every request first
# (auth_request), with kept-alive connections to both.
auth_proxy() {
    echo "
        upstream up { server 127.0.0.1:$2; keepalive 64; }
        upstream auth { server 127.0.0.1:$3; keepalive 64; }
        server {
            listen 127.0.0.1:$1;
            location / { auth_request /auth; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_pass http://up; }
            location = /auth { internal; proxy_http_version 1.1; proxy_set_header Connection \"\";
                proxy_pass_request_body off; proxy_set_header Content-Length \"\"; proxy_pass http://auth; }
        }"
}

# The Lua module's two dynamic modules (Debian's libnginx-mod-http-lua),
# for the main context of a config that uses kong_like.
KONG_MODULES="load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;"

# kong_like PORT UPSTREAM-PORT KEY: the http block of k, a stand-in for
# Kong's key-auth on OpenResty: nginx with an access_by_lua check that looks
# the Bearer key's SHA-256 up in a lua_shared_dict filled at start (as Kong
# caches its consumers), answers unknown keys 401 in JSON, and sets the
# identity headers the gate sets (dropping Authorization), with a
# kept-alive upstream. SHA-256 is OpenSSL's, through LuaJIT's FFI, as
# lua-resty-string does it.
kong_like() {
    cat <<BLOCK
    lua_shared_dict keys 1m;
    init_by_lua_block {
        local ffi = require "ffi"
        ffi.cdef[[ unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md); ]]
        local md = ffi.new("unsigned char[32]")
        function sha256(s)
            ffi.C.SHA256(s, #s, md)
            return ffi.string(md, 32)
        end
        ngx.shared.keys:set(sha256("$3"), "1\tsubmit_score\t\tbench-token")
    }
    upstream up { server 127.0.0.1:$2; keepalive 64; }
    server {
        listen 127.0.0.1:$1;
        location / {
            access_by_lua_block {
                local auth = ngx.var.http_authorization
                local key = auth and auth:match("^Bearer (%x+)\$")
                local found = key and ngx.shared.keys:get(sha256(key))
                if not found then
                    ngx.status = 401
                    ngx.header["Content-Type"] = "application/json"
                    ngx.print('{"success":false,"description":"The provided API token does not correspond with any key in the database."}')
                    return ngx.exit(401)
                end
                local user, perms, client, token = found:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\$")
                ngx.req.set_header("X-Tachi-User-ID", user)
                ngx.req.set_header("X-Tachi-Permissions", perms)
                if client ~= "" then ngx.req.set_header("X-Tachi-Client-ID", client)
                else ngx.req.clear_header("X-Tachi-Client-ID") end
                ngx.req.set_header("X-Tachi-Token-ID", token)
                ngx.req.clear_header("Authorization")
            }
            proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://up;
        }
    }
BLOCK
}

# upstream_nginx PORT: the fast upstream, one nginx worker answering a small JSON.
upstream_nginx() {
    nginx_conf upstream 1 "server { listen 127.0.0.1:$1; location / { default_type application/json; return 200 '{\"success\":true,\"description\":\"ok\",\"body\":{}}'; } }"
}

# wait_port PORT [SECONDS=10]: waits until something listens on PORT.
wait_port() {
    local _
    for _ in $(seq 1 $(( ${2:-10} * 20 ))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 did not open" >&2
    exit 1
}

# bench_key [STORE=$work/store]: creates one key in that store and prints it.
bench_key() {
    "$gate" --data "${1:-$work/store}" keys create --user 1 --permissions submit_score --identifier bench 2>/dev/null \
        | sed -n 's/.*"token": "\([0-9a-f]*\)".*/\1/p'
}

# gate_conf THREADS: writes $work/gate.toml, a gate without rate limits or
# access log, and no admin listener.
gate_conf() {
    printf '[server]\nadmin_listen = ""\nthreads = %s\n[limits]\nenabled = false\n[log]\nlevel = "error"\n' "$1" >"$work/gate.toml"
}
