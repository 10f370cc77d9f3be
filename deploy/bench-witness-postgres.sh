#!/usr/bin/env bash
# Benchmark of the witness's stores side by side, in one run, that prints figures (never
# pass/fail): the same N simulated appliances and load (`auditstamp bench witness`) against
#   1. one witness server on sled (the default store),
#   2. one witness server on PostgreSQL,
#   3. two witness servers sharing one PostgreSQL database (the load spread over both),
# each on a fresh store. Builds the release binary, provisions a throw-away SoftHSM2 token
# (one Ed25519 witness key, each server in its own sessions) and a throw-away PostgreSQL
# cluster from Debian's package (initdb + pg_ctl in a temporary directory, a Unix socket,
# no system service touched; as the postgres user when run as root). Prints each run's
# cosigned checkpoints/s (median of one-second samples), p50/p99 latency and store bytes per
# appliance, then the table with the ratios to sled. The load generator and the database
# run on the same machine and take part of its CPU.
#
#   AUDITSTAMP_BENCH_SECONDS   seconds of load per run (default 20)
#   AUDITSTAMP_BENCH_LOGS      simulated appliances (default 10000)
#   AUDITSTAMP_BENCH_CLIENTS   concurrent connections (default 64)
#   AUDITSTAMP_BENCH_SESSIONS  HSM sessions of each witness server (default 2)
#   AUDITSTAMP_BENCH_POOL      PostgreSQL connections of each server (default 16)
#   AUDITSTAMP_BENCH_REFRESH_MS  how often each server re-reads every log (default 2000)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages '/usr/lib/postgresql/*/bin/initdb:postgresql' python3:python3
ensure_rust
cargo build --release --locked --quiet
bin=$PWD/target/release/auditstamp
module=${AUDITSTAMP_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
seconds=${AUDITSTAMP_BENCH_SECONDS:-20}
logs=${AUDITSTAMP_BENCH_LOGS:-10000}
clients=${AUDITSTAMP_BENCH_CLIENTS:-64}
sessions=${AUDITSTAMP_BENCH_SESSIONS:-2}
pool=${AUDITSTAMP_BENCH_POOL:-16}
refresh=${AUDITSTAMP_BENCH_REFRESH_MS:-2000}
seed=1
pgbin=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1)

work=$(mktemp -d)
chmod 755 "$work"
servers=()
as_pg=()
stop_servers() {
    local pid
    for pid in "${servers[@]}"; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    servers=()
}
cleanup() {
    stop_servers
    if [ -f "$work/pg/data/postmaster.pid" ]; then
        "${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The PostgreSQL cluster: a random password, reached on a Unix socket only.
mkdir -p "$work/pg/sock"
head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/pg/pwfile"
if [ "$(id -u)" -eq 0 ]; then
    chown -R postgres:postgres "$work/pg"
    as_pg=(setpriv --reuid postgres --regid postgres --clear-groups --)
fi
"${as_pg[@]}" "$pgbin/initdb" -D "$work/pg/data" -U auditstamp -E UTF8 \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 --pwfile="$work/pg/pwfile" >/dev/null
cat >> "$work/pg/data/postgresql.conf" <<PGCONF
listen_addresses = ''
unix_socket_directories = '$work/pg/sock'
port = 5432
max_connections = 100
shared_buffers = 128MB
PGCONF
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w start >/dev/null
install -m 0600 "$work/pg/pwfile" "$work/db.password"
for db in one two; do
    PGPASSWORD=$(cat "$work/db.password") "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 \
        -d "host=$work/pg/sock port=5432 user=auditstamp dbname=postgres" \
        -c "CREATE DATABASE witness_$db" >/dev/null
done

AUDITSTAMP_BIN=$bin hsm-sim/create-token.sh "$work/hsm" witness-bench >/dev/null
export SOFTHSM2_CONF=$work/hsm/softhsm2.conf
"$bin" bench witness-config --logs "$logs" --seed "$seed" > "$work/logs.toml"

# config NAME PORT [DATABASE]: a witness configuration on sled, or on DATABASE.
config() {
    local file=$work/$1.toml
    cat > "$file" <<CONFIG
[witness]
name = "witness.bench.localhost/w1"
key_label = "witness"
state_dir = "$work/$1"
listen = "127.0.0.1:$2"
plain_http = true
max_connections_per_address = 4096
log_level = "warn"
CONFIG
    if [ -n "${3:-}" ]; then
        cat >> "$file" <<STORE

[witness.store]
kind = "postgres"
url = "host=$work/pg/sock port=5432 user=auditstamp dbname=$3"
password_file = "$work/db.password"
pool_size = $pool
refresh_ms = $refresh
STORE
    fi
    cat >> "$file" <<HSM

[hsm]
module = "$module"
token_label = "witness-bench"
pin_file = "$work/hsm/user.pin"
sessions = $sessions

HSM
    cat "$work/logs.toml" >> "$file"
    mkdir -p "$work/$1"
    echo "$file"
}

serve() { # CONFIG PORT
    "$bin" witness serve --config "$1" 2>>"$work/servers.log" &
    servers+=($!)
    for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$work/servers.log" >&2
    return 1
}

bench() { # NAME URL...
    local name=$1 args=()
    shift
    for u in "$@"; do args+=(--url "$u"); done
    echo "== $name"
    "$bin" bench witness "${args[@]}" --logs "$logs" --seed "$seed" \
        --seconds "$seconds" --clients "$clients" --json > "$work/$name.json"
    python3 - "$work/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"   {r['cosigned_per_second_median']} cosigned/s (median), p50 {r['latency_ms_p50']:.2f} ms, "
      f"p99 {r['latency_ms_p99']:.2f} ms, {r['errors']} errors, store "
      f"{(r['store_disk_bytes_per_appliance'] or 0):.0f} bytes/appliance")
PY
}

"$bin" keys generate --config "$(config sled 8331)" --label witness \
    --algorithm ed25519 --purpose witness >/dev/null
echo "machine: $(nproc) cores, $(uname -r); $logs appliances, $clients connections, $seconds s per run;"
echo "each witness server: $sessions HSM sessions (SoftHSM2); PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), pool $pool, re-read every $refresh ms"

serve "$work/sled.toml" 8331
bench sled http://127.0.0.1:8331
stop_servers

cfg=$(config pg-one 8332 witness_one)
"$bin" witness migrate --config "$cfg" >/dev/null
serve "$cfg" 8332
bench postgres-1-server http://127.0.0.1:8332
stop_servers

cfg_a=$(config pg-two-a 8333 witness_two)
cfg_b=$(config pg-two-b 8334 witness_two)
"$bin" witness migrate --config "$cfg_a" >/dev/null
serve "$cfg_a" 8333
serve "$cfg_b" 8334
bench postgres-2-servers http://127.0.0.1:8333 http://127.0.0.1:8334
stop_servers

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
runs = [("sled, 1 server", "sled"), ("PostgreSQL, 1 server", "postgres-1-server"),
        ("PostgreSQL, 2 servers", "postgres-2-servers")]
rows = [(label, json.load(open(f"{work}/{name}.json"))) for label, name in runs]
base = rows[0][1]["cosigned_per_second_median"] or 1
print()
print("| store | cosigned/s (median) | ratio to sled | p50 ms | p99 ms | errors | store bytes/appliance |")
print("|---|---|---|---|---|---|---|")
for label, r in rows:
    rate = r["cosigned_per_second_median"]
    print(f"| {label} | {rate} | {rate / base:.2f} | {r['latency_ms_p50']:.2f} | "
          f"{r['latency_ms_p99']:.2f} | {r['errors']} | {(r['store_disk_bytes_per_appliance'] or 0):.0f} |")
PY
