#!/usr/bin/env bash
# Benchmarks that print figures (never pass/fail). Builds the release binary, provisions a
# throw-away SoftHSM2 token and development keys in a temporary directory, and measures in
# one run on this machine:
#   (a) the raw HSM limit: PKCS#11 signatures/s with 1 and 2 sessions, ECDSA P-256 and
#       RSA-2048, with the CPU each costs, and the software verification verify-after-sign adds;
#   (b) RFC 3161 tokens/s through HTTP (keep-alive; 1, 16 and 64 connections side by side,
#       each also as a share of (a)'s raw rate) with p50/p99, the server's CPU per token
#       (and the part outside the HSM's signature and the verification) and peak RSS, with
#       verify-after-sign off and on, and p99 at half the maximum rate; beside it the HTTP
#       floor (GET /healthz on the same server and client: what an exchange that does no
#       work costs);
#   (c) durable events/s (batches, and 1 and 64 single clients), and in-process: append rate,
#       proof time at 1M events and bytes per event;
#   (d) tokens verified/s on one thread beside `openssl speed ecdsap256` (bench verify).
# and prints (b)/(a), the server's CPU per token over (raw CPU per signature + one
# software verification), and the most tokens/s this machine could give if a token cost
# only one raw signature plus the HTTP floor.
#
#   AUDITSTAMP_BENCH_LISTEN   address for the server (default 127.0.0.1:8319)
#   AUDITSTAMP_BENCH_SECONDS  seconds per phase (default 10)
#   AUDITSTAMP_BENCH_EVENTS   events for `bench chain` (default 1000000)
#   AUDITSTAMP_BENCH_CONNS    connection counts for the token load, comma-separated
#                             (default 1,16,64); the summary takes the last
#   AUDITSTAMP_BENCH_SESSIONS the server's HSM sessions (default 1: SoftHSM signs on this
#                             machine's CPUs, and a second session adds little but contention)
#   AUDITSTAMP_BENCH_WORKERS  the server's HTTP worker threads (default: CPUs minus sessions,
#                             at least 1, so that each signing thread has a CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages
ensure_rust
cargo build --release --locked --quiet
bin=$PWD/target/release/auditstamp
listen=${AUDITSTAMP_BENCH_LISTEN:-127.0.0.1:8319}
seconds=${AUDITSTAMP_BENCH_SECONDS:-10}
events=${AUDITSTAMP_BENCH_EVENTS:-1000000}
conns=${AUDITSTAMP_BENCH_CONNS:-1,16,64}
last_conns=${conns##*,}
sessions=${AUDITSTAMP_BENCH_SESSIONS:-1}
workers=${AUDITSTAMP_BENCH_WORKERS:-$(( $(nproc) > sessions + 1 ? $(nproc) - sessions : 1 ))}

work=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

config=$work/on.toml
# The load comes from one address: no per-client rate limit for the benchmark.
sed -e "s#^state_dir = .*#state_dir = \"$work/state\"#" \
    -e "s/^sessions = .*/sessions = $sessions/" \
    -e "s/^\\[http\\]\$/[http]\\nrate_limit = { per_second = 0 }\\nworker_threads = $workers/" \
    firmware-config/dev.toml > "$config"
sed 's/^verify_after_sign = true/verify_after_sign = false/' "$config" > "$work/off.toml"
provision_dev_state "$bin" "$config" "$work/state" >/dev/null
"$bin" keys generate --config "$config" --label bench-rsa --algorithm rsa-2048 --purpose tsa --if-missing >/dev/null

# result KEY: the value of KEY=... on the last "result" line of file $1
field() { grep '^result' "$1" | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }

echo "machine: $(nproc) cores, $(uname -r); $seconds s per phase; server: $sessions HSM session(s), $workers HTTP worker thread(s)"
echo "== (a) the HSM's own limit"
"$bin" bench hsm --config "$config" --label tsa-dev --seconds "$seconds" | tee "$work/hsm-ec"
"$bin" bench hsm --config "$config" --label bench-rsa --seconds "$seconds" | tee "$work/hsm-rsa"
# The HSM's limit is the better of 1 and 2 sessions (SoftHSM's second session adds little,
# and some runs nothing).
raw1=$(field "$work/hsm-ec" rate_1)
raw2=$(field "$work/hsm-ec" rate_2)
raw=$(( ${raw1%.*} > ${raw2%.*} ? ${raw1%.*} : ${raw2%.*} ))
raw_cpu=$(field "$work/hsm-ec" cpu_us_2)
raw_cpu1=$(field "$work/hsm-ec" cpu_us_1)
pool=$(field "$work/hsm-ec" pool_rate_2)
verify_us=$(field "$work/hsm-ec" verify_us)

start_server() {
    AUDITSTAMP_LISTEN=$listen "$bin" serve --config "$1" 2>"$work/server.log" &
    server=$!
    for _ in $(seq 100); do
        curl -sf "http://$listen/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$work/server.log" >&2
    exit 1
}
stop_server() {
    echo "server: peak RSS $(awk '/VmHWM/ {print $2, $3}' "/proc/$server/status")"
    kill "$server"; wait "$server" 2>/dev/null || true; server=
}

for mode in off on; do
    echo "== (b) tokens through HTTP, verify-after-sign $mode"
    start_server "$work/$mode.toml"
    verify=()
    if [ "$mode" = on ]; then verify=(--verify-us "$verify_us"); fi
    "$bin" bench tokens --url "http://$listen" --connections "$conns" --seconds "$seconds" \
        --server-pid "$server" --hsm-rate "$raw" --hsm-cpu-us "$raw_cpu1" "${verify[@]}" | tee "$work/tok-$mode"
    max=$(field "$work/tok-$mode" rate)
    if [ "$mode" = off ]; then
        "$bin" bench tokens --floor --url "http://$listen" --connections "$last_conns" --seconds "$seconds" \
            --server-pid "$server" | tee "$work/floor"
    fi
    "$bin" bench tokens --url "http://$listen" --connections 32 --seconds "$seconds" \
        --rate $((${max%.*} / 2)) --server-pid "$server" | tee "$work/half-$mode"
    if [ "$mode" = on ]; then
        echo "== (c) events"
        "$bin" bench events --url "http://$listen" --seconds "$seconds"
    fi
    stop_server
done

awk -v raw="$raw" -v rawcpu="$raw_cpu" -v rawcpu1="$raw_cpu1" -v ver="$verify_us" -v pool="$pool" \
    -v off="$(field "$work/tok-off" rate)" -v on="$(field "$work/tok-on" rate)" \
    -v cpuoff="$(field "$work/tok-off" server_cpu_us)" -v cpuon="$(field "$work/tok-on" server_cpu_us)" \
    -v p99off="$(field "$work/half-off" p99_ms)" -v p99on="$(field "$work/half-on" p99_ms)" \
    -v fsrv="$(field "$work/floor" server_cpu_us)" -v fcli="$(field "$work/floor" client_cpu_us)" \
    -v frate="$(field "$work/floor" rate)" -v cores="$(nproc)" -v last="$last_conns" \
    -v outoff="$(field "$work/tok-off" outside_us)" -v outon="$(field "$work/tok-on" outside_us)" 'BEGIN {
    printf "== summary (ECDSA P-256)\n"
    printf "raw HSM: %d signatures/s (the better of 1 and 2 sessions); %.1f us CPU each with both CPUs signing, %.1f us with one; software verify %.1f us\n", raw, rawcpu, rawcpu1, ver
    printf "through the signing pool (async callers): %d signatures/s = %.0f%% of raw\n", pool, 100*pool/raw
    printf "tokens/s at %d connections, verify-after-sign off: %d = %.0f%% of raw (target 75%%)\n", last, off, 100*off/raw
    printf "tokens/s at %d connections, verify-after-sign on:  %d = %.0f%% of raw (target 55%%)\n", last, on, 100*on/raw
    printf "server CPU per token outside the signature (off): %.1f us; outside the signature and the verification (on): %.1f us\n", outoff, outon
    printf "server CPU per token, on: %.1f us = %.2fx (raw CPU per signature with both CPUs signing + one verify; target 1.25x)\n", cpuon, cpuon/(rawcpu+ver)
    printf "   ... = %.2fx with the raw CPU per signature of one session alone on the machine (%.1f us)\n", cpuon/(rawcpu1+ver), rawcpu1
    printf "server CPU per token, off: %.1f us = %.2fx raw CPU per signature\n", cpuoff, cpuoff/rawcpu
    printf "p99 at half the maximum rate: %.2f ms (off), %.2f ms (on) (target < 10 ms)\n", p99off, p99on
    bound = cores * 1e6 / (rawcpu + fsrv + fcli)
    printf "HTTP floor (GET /healthz): %d requests/s, server %.1f us + client %.1f us CPU each\n", frate, fsrv, fcli
    printf "ceiling on %d cores, a token costing one raw signature + the HTTP floor: %d tokens/s = %.0f%% of raw\n", cores, bound, 100*bound/raw
}'
echo "== in-process chain"
"$bin" bench chain --events "$events" --dir "$work"
echo "== (d) verification"
"$bin" bench verify --seconds 3
