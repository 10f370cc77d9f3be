#!/usr/bin/env bash
# Benchmark of the data center's witness that prints figures (never pass/fail): builds the
# release binary, provisions a throw-away SoftHSM2 token holding the witness's Ed25519 key
# in a temporary directory, registers N simulated appliances (`auditstamp bench
# witness-config`), starts `auditstamp witness serve` there, and runs `auditstamp bench
# witness`: cosigned checkpoints/s (median of one-second samples), p50/p99 latency and the
# witness store's bytes per appliance; then prints the server's CPU time and peak RSS.
# The load generator runs on the same machine and takes part of its CPU.
#
#   AUDITSTAMP_BENCH_LISTEN    address for the witness (default 127.0.0.1:8321)
#   AUDITSTAMP_BENCH_SECONDS   seconds of load (default 20)
#   AUDITSTAMP_BENCH_LOGS      simulated appliances (default 1000)
#   AUDITSTAMP_BENCH_CLIENTS   concurrent connections (default 64)
#   AUDITSTAMP_BENCH_SESSIONS  HSM sessions of the witness (default 2)
#   AUDITSTAMP_BENCH_SEED      seed of the simulated appliances' keys and trees (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages
ensure_rust
cargo build --release --locked --quiet
bin=$PWD/target/release/auditstamp
module=${AUDITSTAMP_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
listen=${AUDITSTAMP_BENCH_LISTEN:-127.0.0.1:8321}
seconds=${AUDITSTAMP_BENCH_SECONDS:-20}
logs=${AUDITSTAMP_BENCH_LOGS:-1000}
clients=${AUDITSTAMP_BENCH_CLIENTS:-64}
sessions=${AUDITSTAMP_BENCH_SESSIONS:-2}
seed=${AUDITSTAMP_BENCH_SEED:-1}

work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

AUDITSTAMP_BIN=$bin hsm-sim/create-token.sh "$work/hsm" witness-bench >/dev/null
export SOFTHSM2_CONF=$work/hsm/softhsm2.conf
cat > "$work/witness.toml" <<CONFIG
[witness]
name = "witness.bench.localhost/w1"
key_label = "witness"
state_dir = "$work"
listen = "$listen"
plain_http = true
max_connections_per_address = 4096
log_level = "warn"

[hsm]
module = "$module"
token_label = "witness-bench"
pin_file = "hsm/user.pin"
sessions = $sessions

CONFIG
"$bin" bench witness-config --logs "$logs" --seed "$seed" >> "$work/witness.toml"
"$bin" keys generate --config "$work/witness.toml" --label witness \
    --algorithm ed25519 --purpose witness >/dev/null

"$bin" witness serve --config "$work/witness.toml" 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do
    curl -sf "http://$listen/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://$listen/healthz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

echo "machine: $(nproc) cores, $(uname -r); witness: $sessions HSM sessions (SoftHSM2), $logs appliances"
"$bin" bench witness --url "http://$listen" --logs "$logs" --seed "$seed" \
    --seconds "$seconds" --clients "$clients"
ticks=$(getconf CLK_TCK)
read -r utime stime < <(awk '{print $14, $15}' "/proc/$server/stat")
echo "witness: CPU $(( (utime + stime) * 1000 / ticks )) ms in total, peak RSS $(awk '/VmHWM/ {print $2, $3}' "/proc/$server/status")"
