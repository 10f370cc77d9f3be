#!/usr/bin/env bash
# The archive under the event benchmark's load (figures, never pass/fail). Builds the release
# binary, provisions a throw-away SoftHSM2 token and development keys, and runs
# `auditstamp bench events` (1 and 64 clients posting single events, then 4 clients posting
# batches of 1,000) against an appliance that archives what it seals, to:
#   (a) moto's S3 server (PyPI, in the venv deploy/lib.sh makes; the same server as the
#       tests), keeping every event on the local disk;
#   (b) a local directory (file://), with retain_events (default 100000): the archiver's own
#       rate without moto's, and the local disk a pruned appliance keeps.
# During each run it samples /metrics every second and prints: events posted, the lag
# (sealed but not archived: median and largest), the time the archive took to catch up
# after the load, the archive's rate (events archived per second while it had a lag),
# objects and bytes written, and the local disk per million events (du of the store), with
# the archive's own size per million events for (b).
#
#   AUDITSTAMP_BENCH_LISTEN   address for the server (default 127.0.0.1:8319)
#   AUDITSTAMP_BENCH_SECONDS  seconds per bench events phase (default 10)
#   AUDITSTAMP_BENCH_RETAIN   retain_events of (b) (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages
ensure_rust
ensure_moto
cargo build --release --locked --quiet
bin=$PWD/target/release/auditstamp
listen=${AUDITSTAMP_BENCH_LISTEN:-127.0.0.1:8319}
seconds=${AUDITSTAMP_BENCH_SECONDS:-10}
retain=${AUDITSTAMP_BENCH_RETAIN:-100000}

work=$(mktemp -d)
server=
moto=
sampler=
cleanup() {
    for p in "$sampler" "$server" "$moto"; do
        if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
    done
    rm -rf "$work"
}
trap cleanup EXIT

# moto's S3 server on a free loopback port, and its bucket.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$AUDITSTAMP_MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
for _ in $(seq 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
    sleep 0.1
done
curl -sf -o /dev/null -X PUT --aws-sigv4 aws:amz:us-east-1:s3 --user bench:bench "http://127.0.0.1:$port/bench"

# metric NAME FILE: the value of NAME in a /metrics scrape
metric() { awk -v n="$1" '$1 == n {print $2}' "$2"; }

run() {
    local name=$1 section=$2
    local state=$work/$name config=$work/$name.toml
    sed -e "s#^state_dir = .*#state_dir = \"$state\"#" \
        -e "s/^\\[http\\]\$/[http]\\nrate_limit = { per_second = 0 }/" \
        firmware-config/dev.toml > "$config"
    printf '\n%s\n' "$section" >> "$config"
    provision_dev_state "$bin" "$config" "$state" >/dev/null
    AUDITSTAMP_LISTEN=$listen "$bin" serve --config "$config" 2>"$work/$name.log" &
    server=$!
    for _ in $(seq 100); do
        curl -sf "http://$listen/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    # One sample a second: unix time, lag, archived events, sealed events, bytes archived.
    (
        while true; do
            curl -sf "http://$listen/metrics" > "$work/scrape" 2>/dev/null || true
            echo "$(date +%s.%N) $(metric auditstamp_archive_lag_events "$work/scrape") $(metric auditstamp_archive_archived_events "$work/scrape") $(metric auditstamp_chain_sealed_events "$work/scrape") $(metric auditstamp_archive_bytes_total "$work/scrape")"
            sleep 1
        done
    ) > "$work/$name.samples" &
    sampler=$!
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" bench events --url "http://$listen" --seconds "$seconds" | tee "$work/$name.events"
    t1=$(date +%s.%N)
    # Until the archive holds everything sealed (and nothing is left to seal).
    for _ in $(seq 600); do
        curl -sf "http://$listen/metrics" > "$work/scrape"
        if [ "$(metric auditstamp_archive_lag_events "$work/scrape")" = 0 ] &&
           [ "$(metric auditstamp_chain_sealed_events "$work/scrape")" = "$(metric auditstamp_chain_events "$work/scrape")" ]; then
            break
        fi
        sleep 0.2
    done
    local t2
    t2=$(date +%s.%N)
    kill "$sampler"; wait "$sampler" 2>/dev/null || true; sampler=
    curl -sf "http://$listen/metrics" > "$work/scrape"
    local events objects bytes store_kb
    events=$(metric auditstamp_chain_events "$work/scrape")
    objects=$(metric auditstamp_archive_objects_total "$work/scrape")
    bytes=$(metric auditstamp_archive_bytes_total "$work/scrape")
    kill "$server"; wait "$server" 2>/dev/null || true; server=
    store_kb=$(du -sk "$state/store" | cut -f1)
    echo "== $name: archive under the load"
    # the lag samples taken during the load, sorted
    awk -v t0="$t0" -v t1="$t1" '$1 >= t0 && $1 <= t1 && $2 != "" {print $2}' "$work/$name.samples" |
        sort -n > "$work/$name.lags"
    awk -v t0="$t0" -v t1="$t1" -v t2="$t2" -v events="$events" -v objects="$objects" \
        -v bytes="$bytes" -v store_kb="$store_kb" -v lags="$work/$name.lags" '
        { t[NR] = $1; lag[NR] = $2; arch[NR] = $3; b[NR] = $5 }
        END {
            n = 0
            while ((getline l < lags) > 0) v[++n] = l + 0
            med = n ? v[int((n + 1) / 2)] : 0
            max = n ? v[n] : 0
            # the fastest one-second step of the bytes archived, in events at the
            # bytes per event of this run
            bpe = bytes / events; peak = 0
            for (i = 2; i <= NR; i++) if (b[i] != "" && b[i - 1] != "") {
                r = (b[i] - b[i - 1]) / (t[i] - t[i - 1]); if (r > peak) peak = r
            }
            # the events archived after the load ended, over the time that took
            at1 = 0
            for (i = 1; i <= NR; i++) if (t[i] <= t1 && arch[i] != "") at1 = arch[i]
            catchup = (t2 - t1 > 1) ? (events - at1) / (t2 - t1) : 0
            printf "events %d in %.0f s of load; lag during the load: median %d, largest %d events\n", events, t1 - t0, med, max
            printf "caught up %.1f s after the load ended", t2 - t1
            if (catchup > 0) printf " (%.0f events/s meanwhile)", catchup
            printf "; fastest second: %.1f MB/s = %.0f events/s\n", peak / 1e6, peak / bpe
            printf "archive: %d objects, %.1f MB written = %.0f bytes per event\n", objects, bytes / 1e6, bytes / events
            printf "local store: %.1f MB = %.0f MB per million events\n", store_kb / 1024, store_kb / 1024 / events * 1e6
        }' "$work/$name.samples"
    echo "$events" > "$work/$name.count"
}

echo "machine: $(nproc) cores, $(uname -r); bench events: $seconds s per phase"
run moto "[archive]
url = \"s3://bench/appliance\"
endpoint = \"http://127.0.0.1:$port\""
run dir "[archive]
url = \"file://$work/archive\"
retain_events = $retain"
awk -v kb="$(du -sk "$work/archive" | cut -f1)" -v events="$(cat "$work/dir.count")" \
    'BEGIN { printf "archive directory of (b): %.1f MB = %.0f MB per million events\n", kb / 1024, kb / 1024 / events * 1e6 }'
