#!/usr/bin/env bash
# Benchmark of the witness's stores side by side, in one run, that prints figures (never
# pass/fail): the same N simulated appliances and load (`auditstamp bench witness`) against
#   1. one witness server on sled (the default store),
#   2. one witness server on PostgreSQL,
#   3. two witness servers sharing one PostgreSQL database (the load spread over both),
# at one connection, a few and many, in rounds (each round runs every store at every
# concurrency, so that the machine's noise falls on all alike). Builds the release binary,
# provisions a throw-away SoftHSM2 token (one Ed25519 witness key, each server in its own
# sessions) and a throw-away PostgreSQL cluster from Debian's package (initdb + pg_ctl in a
# temporary directory, a Unix socket, no system service touched; as the postgres user when
# run as root). Prints each run's cosigned checkpoints/s (median of one-second samples),
# then the table: per store and concurrency the medians over the rounds of cosigned/s, of
# the ratio to sled in the same round, of p50/p99 latency and of the CPU time per
# cosignature (the witness servers', the database's), and store bytes per appliance.
# The load generator and the database run on the same machine and take part of its CPU.
#
#   AUDITSTAMP_BENCH_SECONDS   seconds of load per run (default 10)
#   AUDITSTAMP_BENCH_ROUNDS    rounds (default 3)
#   AUDITSTAMP_BENCH_LOGS      simulated appliances (default 10000)
#   AUDITSTAMP_BENCH_CLIENTS   concurrent connections, a list (default "1 8 64")
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
seconds=${AUDITSTAMP_BENCH_SECONDS:-10}
rounds=${AUDITSTAMP_BENCH_ROUNDS:-3}
logs=${AUDITSTAMP_BENCH_LOGS:-10000}
clients=${AUDITSTAMP_BENCH_CLIENTS:-1 8 64}
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

# CPU time (clock ticks, user + system) of each process, as "pid ticks" lines.
ticks() {
    local p
    for p in "$@"; do
        awk -v p="$p" '{print p, $14 + $15}' "/proc/$p/stat" 2>/dev/null || true
    done
}
# The PostgreSQL server's processes (postmaster and its children).
pg_pids() {
    local pm
    pm=$(head -n 1 "$work/pg/data/postmaster.pid")
    echo "$pm" $(pgrep -P "$pm")
}

bench() { # FILE CLIENTS URL...
    local file=$1 n=$2 args=() db=()
    shift 2
    for u in "$@"; do args+=(--url "$u"); done
    if [ "$on_db" = 1 ]; then db=($(pg_pids)); fi
    ticks "${servers[@]}" > "$file.witness-before"
    ticks "${db[@]}" > "$file.db-before"
    "$bin" bench witness "${args[@]}" --logs "$logs" --seed "$seed" \
        --seconds "$seconds" --clients "$n" --json > "$file"
    ticks "${servers[@]}" > "$file.witness-after"
    if [ "$on_db" = 1 ]; then db=($(pg_pids)); fi
    ticks "${db[@]}" > "$file.db-after"
    python3 - "$file" "$n" "$(getconf CLK_TCK)" <<'PY'
import json, sys
path, n, hz = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = json.load(open(path))
def used(part):
    # CPU seconds each process used during the run (one started meanwhile: from zero).
    read = lambda f: dict(l.split() for l in open(f"{path}.{part}-{f}") if l.strip())
    before, after = read("before"), read("after")
    return sum(int(t) - int(before.get(p, 0)) for p, t in after.items()) / hz
done = max(r["cosigned"], 1)
r["cpu_ms_per_cosignature_witness"] = used("witness") * 1000 / done
r["cpu_ms_per_cosignature_database"] = used("db") * 1000 / done
json.dump(r, open(path, "w"))
print(f"   {n:>3} connections: {r['cosigned_per_second_median']} cosigned/s (median), "
      f"p50 {r['latency_ms_p50']:.2f} ms, p99 {r['latency_ms_p99']:.2f} ms, {r['errors']} errors; "
      f"CPU per cosignature: witness {r['cpu_ms_per_cosignature_witness']:.3f} ms, "
      f"database {r['cpu_ms_per_cosignature_database']:.3f} ms")
PY
}

# run ROUND NAME URL...: every concurrency against the servers started.
run() {
    local round=$1 name=$2 n
    shift 2
    echo "== round $round: $name"
    for n in $clients; do
        bench "$work/r$round-$name-c$n.json" "$n" "$@"
    done
}

"$bin" keys generate --config "$(config sled 8331)" --label witness \
    --algorithm ed25519 --purpose witness >/dev/null
echo "machine: $(nproc) cores, $(uname -r); $logs appliances, connections: $clients; $seconds s per run, $rounds rounds;"
echo "each witness server: $sessions HSM sessions (SoftHSM2); PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'), pool $pool, re-read every $refresh ms"

cfg=$(config pg-one 8332 witness_one)
cfg_a=$(config pg-two-a 8333 witness_two)
cfg_b=$(config pg-two-b 8334 witness_two)
"$bin" witness migrate --config "$cfg" >/dev/null
"$bin" witness migrate --config "$cfg_a" >/dev/null
for round in $(seq "$rounds"); do
    on_db=0
    serve "$work/sled.toml" 8331
    run "$round" sled http://127.0.0.1:8331
    stop_servers
    on_db=1
    serve "$cfg" 8332
    run "$round" postgres-1-server http://127.0.0.1:8332
    stop_servers
    serve "$cfg_a" 8333
    serve "$cfg_b" 8334
    run "$round" postgres-2-servers http://127.0.0.1:8333 http://127.0.0.1:8334
    stop_servers
done

python3 - "$work" "$rounds" $clients <<'PY'
import json, statistics, sys
work, rounds, clients = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
runs = [("sled, 1 server", "sled"), ("PostgreSQL, 1 server", "postgres-1-server"),
        ("PostgreSQL, 2 servers", "postgres-2-servers")]
def load(r, name, n):
    return json.load(open(f"{work}/r{r}-{name}-c{n}.json"))
med = statistics.median
print()
print("| store | connections | cosigned/s | ratio to sled | p50 ms | p99 ms | CPU ms/cosignature: witness + database | errors | store bytes/appliance |")
print("|---|---|---|---|---|---|---|---|---|")
for n in clients:
    for label, name in runs:
        rs = [load(r, name, n) for r in range(1, rounds + 1)]
        base = [load(r, "sled", n)["cosigned_per_second_median"] or 1 for r in range(1, rounds + 1)]
        rates = [x["cosigned_per_second_median"] for x in rs]
        ratio = med(rate / b for rate, b in zip(rates, base))
        print(f"| {label} | {n} | {med(rates):.0f} | {ratio:.2f} | "
              f"{med(x['latency_ms_p50'] for x in rs):.2f} | {med(x['latency_ms_p99'] for x in rs):.2f} | "
              f"{med(x['cpu_ms_per_cosignature_witness'] for x in rs):.3f} + "
              f"{med(x['cpu_ms_per_cosignature_database'] for x in rs):.3f} | "
              f"{sum(x['errors'] for x in rs)} | {(rs[-1]['store_disk_bytes_per_appliance'] or 0):.0f} |")
print()
print(f"medians over {rounds} rounds; the ratio is each round's rate over sled's at the same "
      "connections in that round; CPU: user + system time of the witness servers' and the "
      "database's processes during the run (with the load generator's start-up), over the "
      "checkpoints cosigned")
PY
