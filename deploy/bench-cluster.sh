#!/usr/bin/env bash
# Benchmark (prints figures, never pass/fail): RFC 3161 tokens/s through HAProxy
# (deploy/haproxy/auditstamp.cfg) with 1, 2 and 3 nodes behind it, and straight to one node,
# side by side in one run, at 1, 16 and 64 keep-alive connections (`auditstamp bench
# tokens`, one run per setup and count); the median of a few rounds, each rate also as a
# ratio to one node direct. Beside them, from /proc/<pid>/stat over each run: the CPU per
# token of the nodes and of HAProxy (the balancer's own cost), with the client's, and the
# ceiling those put on the rate with this machine's cores.
#
# All of it runs on this machine: the nodes share its CPUs (with 2 cores, a second and third
# node add no CPU, only contention), so what the figures show is the balancer's own cost and
# that the nodes' rates add up to what the CPUs allow, not how a cluster of machines scales.
#
#   AUDITSTAMP_BENCH_SECONDS  seconds per measurement (default 8)
#   AUDITSTAMP_BENCH_ROUNDS   rounds; each figure is the median (default 3)
#   AUDITSTAMP_BENCH_CONNS    connection counts (default 1,16,64)
#   AUDITSTAMP_BENCH_PORT     first port (default 8340: the balancer; the nodes the next
#                             three, HAProxy's status page the fourth)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages /usr/sbin/haproxy:haproxy
ensure_rust
cargo build --release --locked --quiet
bin=$PWD/target/release/auditstamp
haproxy=/usr/sbin/haproxy
seconds=${AUDITSTAMP_BENCH_SECONDS:-8}
rounds=${AUDITSTAMP_BENCH_ROUNDS:-3}
conns=${AUDITSTAMP_BENCH_CONNS:-1,16,64}
port=${AUDITSTAMP_BENCH_PORT:-8340}
host=127.0.0.1
cores=$(nproc)
# As deploy/bench.sh: one HSM session per node, and the HTTP workers on the other CPUs.
workers=$(( cores > 2 ? cores - 1 : 1 ))

work=$(mktemp -d)
pids=()
hp=
cleanup() {
    for p in "${pids[@]}" $hp; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/readyz")" = 200 ]; }

echo "machine: $cores cores, $(uname -r); $rounds round(s) of $seconds s per measurement; each node: 1 HSM session, $workers HTTP worker thread(s); $($haproxy -v | head -n 1)"
ensure_cluster_ca "$work/ca"
for n in 1 2 3; do
    state=$work/node-$n
    mkdir -p "$state"
    cluster_node_config "$n" "$state" "$host:$((port + n))" |
        sed -e "s/^sessions = .*/sessions = 1/" -e "s/^\\[http\\]\$/[http]\\nworker_threads = $workers/" \
            -e 's/^level = "info"/level = "warn"/' >"$state/node.toml"
    (provision_cluster_node "$bin" "$state/node.toml" "$state" "$work/ca")
    SOFTHSM2_CONF=$state/hsm/softhsm2.conf "$bin" serve --config "$state/node.toml" 2>"$state/server.log" &
    pids+=($!)
    node_pid[n]=$!
    wait_for "node $n ready (see $state/server.log)" 30 ready "$host:$((port + n))"
done

export AUDITSTAMP_CLUSTER_LISTEN=$host:$port AUDITSTAMP_CLUSTER_STATS=$host:$((port + 4))
export AUDITSTAMP_NODE1=$host:$((port + 1)) AUDITSTAMP_NODE2=$host:$((port + 2)) AUDITSTAMP_NODE3=$host:$((port + 3))
node_up() {
    curl -sf "http://$AUDITSTAMP_CLUSTER_STATS/;csv" |
        awk -F, -v n="node$1" '$1 == "auditstamp" && $2 == n && $18 == "UP" { ok = 1 } END { exit !ok }'
}
# start_haproxy K: HAProxy with the shipped configuration, its pool cut to nodes 1..K.
start_haproxy() {
    local k=$1 cfg=$work/haproxy-$1.cfg
    if [ "$k" -lt 3 ]; then
        sed -E "/^[[:space:]]*server node[$((k + 1))-3] /d" deploy/haproxy/auditstamp.cfg >"$cfg"
    else
        cp deploy/haproxy/auditstamp.cfg "$cfg"
    fi
    "$haproxy" -c -q -f "$cfg"
    "$haproxy" -f "$cfg" -db >"$work/haproxy-$k.log" 2>&1 &
    hp=$!
    local n
    for n in $(seq 1 "$k"); do
        wait_for "HAProxy sees node $n up (see $work/haproxy-$k.log)" 15 node_up "$n"
    done
}
stop_haproxy() { kill "$hp"; wait "$hp" 2>/dev/null || true; hp=; }

# cpu_ticks PID...: the CPU time (user + system, clock ticks) the processes have used.
cpu_ticks() {
    local t=0 p
    for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
    echo "$t"
}
tck=$(getconf CLK_TCK)
# field FILE KEY: the value of KEY=... on the "result" line bench tokens printed.
field() { grep '^result' "$1" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# measure SETUP ROUND URL: bench tokens at each connection count, one run each, with the CPU
# the nodes and HAProxy used meanwhile; one line per count in $work/results:
#   setup round connections tokens/s p50 p99 errors node_us haproxy_us client_us
measure() {
    local setup=$1 round=$2 url=$3 c out n0 n1 h0=0 h1=0 tokens
    for c in "${counts[@]}"; do
        out=$work/$setup-$round-$c
        n0=$(cpu_ticks "${node_pid[@]}")
        [ -n "$hp" ] && h0=$(cpu_ticks "$hp")
        "$bin" bench tokens --url "$url" --connections "$c" --seconds "$seconds" >"$out"
        n1=$(cpu_ticks "${node_pid[@]}")
        [ -n "$hp" ] && h1=$(cpu_ticks "$hp")
        grep -m 1 '^tokens' "$out"
        tokens=$(sed -n 's/.*(\([0-9]*\) tokens, [0-9]* errors).*/\1/p' "$out" | head -n 1)
        awk -v s="$setup" -v r="$round" -v c="$c" -v rate="$(field "$out" rate)" \
            -v p50="$(field "$out" p50_ms)" -v p99="$(field "$out" p99_ms)" -v err="$(field "$out" errors)" \
            -v n="$((n1 - n0))" -v h="$((h1 - h0))" -v tck="$tck" -v tok="$tokens" \
            -v cli="$(field "$out" client_cpu_us)" 'BEGIN {
            printf "%s %s %s %s %s %s %s %.1f %.1f %s\n", s, r, c, rate, p50, p99, err,
                n * 1e6 / tck / tok, h * 1e6 / tck / tok, cli }' >>"$work/results"
    done
}

IFS=, read -r -a counts <<<"$conns"
setups=(direct pool-1 pool-2 pool-3)
for round in $(seq 1 "$rounds"); do
    for setup in "${setups[@]}"; do
        echo "== round $round: $setup"
        if [ "$setup" = direct ]; then
            measure direct "$round" "http://$AUDITSTAMP_NODE1"
        else
            start_haproxy "${setup#pool-}"
            measure "$setup" "$round" "http://$AUDITSTAMP_CLUSTER_LISTEN"
            stop_haproxy
        fi
    done
done

# median SETUP CONNECTIONS COLUMN: the median over the rounds of a column of $work/results
# (4 tokens/s, 5 p50, 6 p99, 7 errors, 8 node µs, 9 HAProxy µs, 10 client µs per token).
median() {
    awk -v s="$1" -v c="$2" -v k="$3" '$1 == s && $3 == c { print $k }' "$work/results" | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
label() {
    case $1 in
        direct) echo "one node, direct" ;;
        pool-1) echo "HAProxy, 1 node" ;;
        pool-*) echo "HAProxy, ${1#pool-} nodes" ;;
    esac
}

echo
echo "== tokens/s, medians over $rounds round(s) of $seconds s (ratio to one node direct at the same connections)"
printf '%-18s' setup
for c in "${counts[@]}"; do printf ' %15s' "$c conn."; done
printf '  %s\n' "errors"
for setup in "${setups[@]}"; do
    printf '%-18s' "$(label "$setup")"
    errors=0
    for c in "${counts[@]}"; do
        rate=$(median "$setup" "$c" 4)
        base=$(median direct "$c" 4)
        printf ' %15s' "$(awk -v r="$rate" -v b="$base" 'BEGIN { printf "%.0f (%.2f)", r, r / b }')"
        errors=$((errors + $(awk -v s="$setup" -v c="$c" '$1 == s && $3 == c { e += $7 } END { print e + 0 }' "$work/results")))
    done
    printf '  %s\n' "$errors"
done

echo
echo "== latency p50 / p99, ms (medians)"
printf '%-18s' setup
for c in "${counts[@]}"; do printf ' %17s' "$c conn."; done
echo
for setup in "${setups[@]}"; do
    printf '%-18s' "$(label "$setup")"
    for c in "${counts[@]}"; do printf ' %17s' "$(median "$setup" "$c" 5) / $(median "$setup" "$c" 6)"; done
    echo
done

echo
echo "== CPU per token (µs; medians) and the ceiling it puts on $cores cores: cores / (nodes + HAProxy + client)"
printf '%-18s %5s %8s %8s %8s %8s %12s %9s\n' setup conn. nodes HAProxy client sum "ceiling/s" measured
for setup in "${setups[@]}"; do
    for c in "${counts[@]}"; do
        awk -v l="$(label "$setup")" -v c="$c" -v n="$(median "$setup" "$c" 8)" -v h="$(median "$setup" "$c" 9)" \
            -v k="$(median "$setup" "$c" 10)" -v r="$(median "$setup" "$c" 4)" -v cores="$cores" 'BEGIN {
            sum = n + h + k
            printf "%-18s %5s %8.1f %8.1f %8.1f %8.1f %12.0f %9.0f\n", l, c, n, h, k, sum, cores * 1e6 / sum, r }'
    done
done
echo "(nodes: the three nodes' CPU together; the measured rate stays under the ceiling where"
echo " something else than CPU limits it, e.g. one HSM session per node signing one token at a time)"
