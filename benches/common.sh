# Shared set-up of the shell benchmarks; source it from the repository root.
# bench_setup TOOL...: installs the build's needs (scripts/setup) and any
# missing Debian packages named, then builds the release gate and the bare
# Pingora passthrough; sets $gate and $passthrough to the two binaries.
bench_setup() {
    scripts/setup
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
    cargo build --release --quiet --bin tachi-gate --example passthrough
    gate=target/release/tachi-gate
    passthrough=target/release/examples/passthrough
}
