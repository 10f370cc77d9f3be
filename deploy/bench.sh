#!/usr/bin/env bash
# Benchmarks that print figures (never pass/fail): builds the release binary, provisions a
# throw-away SoftHSM2 token and development keys in a temporary directory, starts the
# server there, and runs:
#   auditstamp bench events  durable events/s through HTTP (batches, and 64 single clients)
#   auditstamp bench chain   in-process append rate, proof time at 1M events, bytes/event
#   auditstamp bench verify  tokens verified/s on one thread beside `openssl speed ecdsap256`
# and prints the server's CPU time and peak resident memory.
#
#   AUDITSTAMP_BENCH_LISTEN   address for the server (default 127.0.0.1:8319)
#   AUDITSTAMP_BENCH_SECONDS  seconds per HTTP phase (default 10)
#   AUDITSTAMP_BENCH_EVENTS   events for `bench chain` (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages
ensure_rust
cargo build --release --locked --quiet
bin=$PWD/target/release/auditstamp
config=$PWD/firmware-config/dev.toml
listen=${AUDITSTAMP_BENCH_LISTEN:-127.0.0.1:8319}
seconds=${AUDITSTAMP_BENCH_SECONDS:-10}
events=${AUDITSTAMP_BENCH_EVENTS:-1000000}

work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

provision_dev_state "$bin" "$config" "$work/state" >/dev/null
AUDITSTAMP_LISTEN=$listen "$bin" serve --config "$config" 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do
    curl -sf "http://$listen/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://$listen/healthz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

echo "machine: $(nproc) cores, $(uname -r)"
"$bin" bench events --url "http://$listen" --seconds "$seconds"
ticks=$(getconf CLK_TCK)
read -r utime stime < <(awk '{print $14, $15}' "/proc/$server/stat")
echo "server: CPU $(( (utime + stime) * 1000 / ticks )) ms in total, peak RSS $(awk '/VmHWM/ {print $2, $3}' "/proc/$server/status")"
kill "$server"
wait "$server" 2>/dev/null || true
server=
"$bin" bench chain --events "$events" --dir "$work"
"$bin" bench verify --seconds 3
