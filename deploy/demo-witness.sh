#!/usr/bin/env bash
# Demo: three appliances and one data-center witness on loopback. Each appliance gets its
# own SoftHSM2 token and development keys; the witness its own token and Ed25519 key and
# the three appliances registered. Events are driven into each appliance, every appliance
# submits its checkpoints to the witness, and the witness's status is shown.
#
#   AUDITSTAMP_DEMO_DIR   where the demo's state goes (default: a temporary directory,
#                         removed at the end; set it to keep and inspect the state)
#   AUDITSTAMP_DEMO_PORT  first port (default 8330: witness, then one per appliance)
#   AUDITSTAMP_DEMO_SERVE 1: keep serving after the summary, until Ctrl-C, to look at the
#                         consoles (the default when run from a terminal); 0: stop at once
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages
ensure_rust
echo "building auditstamp (release)..."
cargo build --release --locked --quiet
bin=$PWD/target/release/auditstamp
port=${AUDITSTAMP_DEMO_PORT:-8330}
if [ -n "${AUDITSTAMP_DEMO_DIR:-}" ]; then
    work=$AUDITSTAMP_DEMO_DIR; keep=1; mkdir -p "$work"
else
    work=$(mktemp -d); keep=
fi
work=$(cd "$work" && pwd)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -z "$keep" ] && rm -rf "$work"
}
trap cleanup EXIT

wait_up() {
    for _ in $(seq 100); do
        curl -sf "http://$1/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "error: nothing answers on $1; see $2" >&2
    exit 1
}

# The appliances: dev.toml with their own name, node id, checkpoint origin and state.
for n in 1 2 3; do
    dir=$work/appliance-$n
    mkdir -p "$dir"
    sed -e "s/^id = 1$/id = $n/" -e "s/^name = \"auditstamp-dev\"/name = \"appliance-$n\"/" \
        -e "s#^origin = .*#origin = \"appliance-$n.demo.localhost/chain\"#" \
        -e "s#^state_dir = .*#state_dir = \"$dir\"#" \
        firmware-config/dev.toml > "$dir/appliance.toml"
    (provision_dev_state "$bin" "$dir/appliance.toml" "$dir" >/dev/null)
done

# The witness, registering each appliance's checkpoint origin and chain key.
wdir=$work/witness
AUDITSTAMP_BIN=$bin hsm-sim/create-token.sh "$wdir/hsm" demo-witness >/dev/null
{
    cat <<CONFIG
[witness]
name = "witness.demo.localhost/w1"
key_label = "witness"
state_dir = "$wdir"
listen = "127.0.0.1:$port"
plain_http = true
log_level = "warn"

[hsm]
module = "${AUDITSTAMP_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
token_label = "demo-witness"
pin_file = "hsm/user.pin"
CONFIG
    for n in 1 2 3; do
        dir=$work/appliance-$n
        key=$(SOFTHSM2_CONF=$dir/hsm/softhsm2.conf AUDITSTAMP_STATE_DIR=$dir \
            "$bin" chain verifier-key --config "$dir/appliance.toml")
        printf '\n[[log]]\norigin = "appliance-%s.demo.localhost/chain"\nkey = "%s"\nurl = "http://127.0.0.1:%s"\n' \
            "$n" "$key" "$((port + n))"
    done
} > "$wdir/witness.toml"
export SOFTHSM2_CONF=$wdir/hsm/softhsm2.conf
"$bin" keys generate --config "$wdir/witness.toml" --label witness --algorithm ed25519 \
    --purpose witness --if-missing >/dev/null
wkey=$("$bin" witness verifier-key --config "$wdir/witness.toml")
"$bin" witness serve --config "$wdir/witness.toml" 2>"$wdir/witness.log" &
pids+=($!)
wait_up "127.0.0.1:$port" "$wdir/witness.log"
echo "witness        http://127.0.0.1:$port   key $wkey"
echo "  console      http://127.0.0.1:$port/ui/"

# Each appliance submits to the witness; start them.
for n in 1 2 3; do
    dir=$work/appliance-$n
    printf '\n[[chain.witness]]\nurl = "http://127.0.0.1:%s"\nkey = "%s"\n' "$port" "$wkey" >> "$dir/appliance.toml"
    SOFTHSM2_CONF=$dir/hsm/softhsm2.conf AUDITSTAMP_STATE_DIR=$dir AUDITSTAMP_LISTEN=127.0.0.1:$((port + n)) \
        "$bin" serve --config "$dir/appliance.toml" 2>"$dir/server.log" &
    pids+=($!)
    wait_up "127.0.0.1:$((port + n))" "$dir/server.log"
    echo "appliance-$n    http://127.0.0.1:$((port + n))"
done

# Events into each: a batch of 50 per appliance per round, three rounds.
for round in 1 2 3; do
    for n in 1 2 3; do
        batch=$(for i in $(seq 1 50); do
            printf '{"agency":"agency-%s","auditor":"auditor-%s","action":"data_operation","subject":"case/%s/%s","data_sha256":"%064x","occurred_at":"2026-12-02T09:00:00Z"}\n' \
                "$n" "$i" "$round" "$i" "$((round * 1000 + i))"
        done)
        curl -sf -H 'Content-Type: application/x-ndjson' --data-binary "$batch" \
            "http://127.0.0.1:$((port + n))/v1/events/batch" >/dev/null
    done
    sleep 1.5
done

echo
echo "checkpoint of appliance-1, cosigned by the witness:"
curl -sf "http://127.0.0.1:$((port + 1))/checkpoint" | sed 's/^/  /'
echo
echo "witness status (GET http://127.0.0.1:$port/status):"
if command -v jq >/dev/null; then
    curl -sf "http://127.0.0.1:$port/status" |
        jq -r '.appliances[] | "  \(.origin)  size \(.size)  age \(.age_seconds)s  alerts \(.alerts)"'
else
    curl -sf "http://127.0.0.1:$port/status"
    echo
fi
echo
echo "witness console (no JavaScript needed): http://127.0.0.1:$port/ui/"
echo "appliance consoles (event search, proofs checked in the browser):"
for n in 1 2 3; do echo "  http://127.0.0.1:$((port + n))/ui/"; done
serve=${AUDITSTAMP_DEMO_SERVE:-}
if [ -z "$serve" ]; then
    if [ -t 0 ]; then serve=1; else serve=0; fi
fi
if [ "$serve" = 1 ]; then
    echo "serving until Ctrl-C..."
    wait
fi
if [ -n "$keep" ]; then
    echo "state kept in $work; the servers stop now"
fi
