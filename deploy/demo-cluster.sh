#!/usr/bin/env bash
# Demo: three appliances behind HAProxy on loopback, and a node killed under load.
#
# Installs what is missing (HAProxy, SoftHSM2, OpenSSL, curl: from Debian), builds, and
# provisions three nodes (idempotent): each its own node.id (1, 2, 3: token serials never
# collide), SoftHSM2 token, TSA and chain keys, event chain and checkpoint origin; one
# DEVELOPMENT CA certifies the three TSA keys, so one CA file verifies every node's tokens.
# HAProxy runs deploy/haproxy/auditstamp.cfg. Then: clients send tokens and events through
# the balancer; node 2 is killed with kill -9 under that load; HAProxy marks it down; it is
# started again and comes back; each client's requests are counted (no request fails but
# those in flight at the kill); every node's chain is audited through the balancer
# (/node/<n>) and a token of each node passes `openssl ts -verify` with the one CA.
#
#   AUDITSTAMP_CLUSTER_DIR     the nodes' state (default ./var/cluster; kept between runs)
#   AUDITSTAMP_CLUSTER_LISTEN  the balancer's address (default 127.0.0.1:8330); the nodes
#                              listen on the next three ports, HAProxy's status page on the
#                              fourth
#   AUDITSTAMP_CLUSTER_SECONDS seconds of load before the kill, and after (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh

ensure_debian_packages /usr/sbin/haproxy:haproxy
ensure_rust
echo "building auditstamp (release)..."
cargo build --release --locked --quiet
bin=$PWD/target/release/auditstamp
haproxy=/usr/sbin/haproxy

listen=${AUDITSTAMP_CLUSTER_LISTEN:-127.0.0.1:8330}
host=${listen%:*}
port=${listen##*:}
if ! [[ $port =~ ^[0-9]+$ ]]; then
    echo "error: AUDITSTAMP_CLUSTER_LISTEN=$listen: give host:port" >&2
    exit 1
fi
stats=$host:$((port + 4))
seconds=${AUDITSTAMP_CLUSTER_SECONDS:-4}
mkdir -p "${AUDITSTAMP_CLUSTER_DIR:-var/cluster}"
dir=$(cd "${AUDITSTAMP_CLUSTER_DIR:-var/cluster}" && pwd)
ca=$dir/ca

# What this run leaves to look at afterwards: logs, requests and answers.
run=$dir/run
rm -rf "$run"
mkdir -p "$run"

pids=()
loops=()
node_pid=()
cleanup() {
    touch "$run/stop"
    for p in "${loops[@]}" "${pids[@]}" "${node_pid[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# node_state N: node N's state in HAProxy's pool (UP, DOWN, "UP 1/2" while rising, ...).
node_state() {
    curl -sf "http://$stats/;csv" | awk -F, -v n="node$1" '$1 == "auditstamp" && $2 == n { print $18 }'
}
node_is() { [ "$(node_state "$1")" = "$2" ]; }
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/readyz")" = 200 ]; }

node_env() { echo "SOFTHSM2_CONF=$dir/node-$1/hsm/softhsm2.conf"; }
start_node() {
    local n=$1
    env "$(node_env "$n")" "$bin" serve --config "$dir/node-$n/node.toml" 2>>"$dir/node-$n/server.log" &
    node_pid[n]=$!
    wait_for "node $n ready on $host:$((port + n)) (see $dir/node-$n/server.log)" 30 ready "$host:$((port + n))"
}

echo "== provisioning three nodes and a development CA in $dir"
ensure_cluster_ca "$ca"
for n in 1 2 3; do
    state=$dir/node-$n
    mkdir -p "$state"
    cluster_node_config "$n" "$state" "$host:$((port + n))" >"$state/node.toml"
    (provision_cluster_node "$bin" "$state/node.toml" "$state" "$ca")
    echo "node $n: node.id $n, origin node-$n.cluster.localhost/chain, $host:$((port + n)), TSA certificate by $ca/ca.pem"
done

echo "== starting the nodes and HAProxy ($haproxy -f deploy/haproxy/auditstamp.cfg)"
for n in 1 2 3; do start_node "$n"; done
export AUDITSTAMP_CLUSTER_LISTEN=$listen AUDITSTAMP_CLUSTER_STATS=$stats
export AUDITSTAMP_NODE1=$host:$((port + 1)) AUDITSTAMP_NODE2=$host:$((port + 2)) AUDITSTAMP_NODE3=$host:$((port + 3))
"$haproxy" -c -q -f deploy/haproxy/auditstamp.cfg
"$haproxy" -f deploy/haproxy/auditstamp.cfg -db >"$run/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
haproxy_answers() {
    if ! kill -0 "$haproxy_pid" 2>/dev/null; then
        echo "error: HAProxy stopped:" >&2
        cat "$run/haproxy.log" >&2
        exit 1
    fi
    curl -sf -o /dev/null "http://$stats/"
}
wait_for "HAProxy's status page on $stats" 15 haproxy_answers
for n in 1 2 3; do
    wait_for "HAProxy sees node $n up (see $run/haproxy.log)" 15 node_is "$n" UP
done
echo "balancer http://$listen (tokens: /tsa, events: /v1/events; one node's reads: /node/<n>/...)"
echo "HAProxy status page http://$stats/"

# A client sending time-stamp requests one after another, each on a new connection; one
# line per request: start and end (ms), outcome, token serial (hex) and the digest.
token_client() {
    local c=$1 i=0 out=$run/tokens-$c
    mkdir -p "$out"
    while [ ! -e "$run/stop" ]; do
        i=$((i + 1))
        local digest start code end ok=fail serial=-
        digest=$(openssl rand -hex 32)
        openssl ts -query -digest "$digest" -sha256 -cert -out "$out/$i.tsq" 2>/dev/null
        start=$(now_ms)
        code=$(curl -s -o "$out/$i.tsr" -w '%{http_code}' --max-time 20 \
            -H 'Content-Type: application/timestamp-query' --data-binary "@$out/$i.tsq" \
            "http://$listen/tsa") || code=${code:-000}
        end=$(now_ms)
        if [ "$code" = 200 ]; then
            local text
            text=$(openssl ts -reply -in "$out/$i.tsr" -text 2>/dev/null || true)
            if grep -q '^Status: Granted' <<<"$text"; then
                ok=ok
                serial=$(sed -n 's/^Serial number: 0x//p' <<<"$text")
            fi
        fi
        echo "$start $end $ok $code $serial $digest $i" >>"$out/log"
    done
}

# A client posting auditor events one after another.
event_client() {
    local c=$1 i=0 out=$run/events-$c
    mkdir -p "$out"
    while [ ! -e "$run/stop" ]; do
        i=$((i + 1))
        local start code end ok=fail
        start=$(now_ms)
        code=$(curl -s -o "$out/last.json" -w '%{http_code}' --max-time 20 \
            -H 'Content-Type: application/json' "http://$listen/v1/events" -d '{"agency":"agency-'"$c"'",
            "auditor":"auditor-'"$c"'","action":"data_operation","subject":"case/'"$c/$i"'",
            "data_sha256":"'"$(printf '%064x' "$((c * 1000000 + i))")"'","occurred_at":"2026-12-02T09:00:00Z"}') ||
            code=${code:-000}
        end=$(now_ms)
        [ "$code" = 200 ] && ok=ok
        echo "$start $end $ok $code - - $i" >>"$out/log"
    done
}

clients=(tokens-1 tokens-2 tokens-3 events-1 events-2)
ok_total() { cat "$run"/*/log 2>/dev/null | grep -c ' ok ' || true; }
more_than() { [ "$(ok_total)" -gt "$1" ]; }

echo "== load: 3 token clients and 2 event clients through the balancer"
for c in 1 2 3; do token_client "$c" & loops+=($!); done
for c in 1 2; do event_client "$c" & loops+=($!); done
load_started=$(now_ms)
wait_for "the first answers through the balancer" 30 more_than 10
sleep "$seconds"

echo "== kill -9 node 2 (pid ${node_pid[2]}) under load"
# The kill lasts from the signal until the process is reaped: a dying process still holds
# its sockets, and what reaches it meanwhile is lost with it.
log_at_kill=$(wc -l <"$run/haproxy.log")
kill_start=$(now_ms)
kill -9 "${node_pid[2]}"
wait "${node_pid[2]}" 2>/dev/null || true
kill_end=$(now_ms)
wait_for "HAProxy marks node 2 down" 15 node_is 2 DOWN
down_at=$(now_ms)
echo "HAProxy marked node 2 DOWN $((down_at - kill_end)) ms after the kill; its pool now:"
for n in 1 2 3; do echo "  node$n $(node_state "$n")"; done
echo "GET http://$listen/node/2/readyz through the balancer: $(curl -s -o /dev/null -w '%{http_code}' "http://$listen/node/2/readyz") (no server for it)"
echo "GET http://$listen/readyz through the balancer: $(curl -s -o /dev/null -w '%{http_code}' "http://$listen/readyz") (a node that is up)"
sleep "$seconds"

echo "== node 2 starts again"
start_node 2
wait_for "HAProxy marks node 2 up" 15 node_is 2 UP
up_at=$(now_ms)
echo "HAProxy marked node 2 UP again; its pool now:"
for n in 1 2 3; do echo "  node$n $(node_state "$n")"; done
# tokens_of N SINCE: the log lines of the tokens node N signed for requests started after
# SINCE (ms). A token's serial is its node.id followed by 64 bits of counter (16 hex digits).
tokens_of() {
    cat "$run"/tokens-*/log | awk -v n="$1" -v t="$2" '$3 == "ok" && $1 > t {
        id = length($5) > 16 ? substr($5, 1, length($5) - 16) : "0"
        sub(/^0+/, "", id)
        if (id == n) print }'
}
node2_after() { [ "$(tokens_of 2 "$1" | wc -l)" -ge 3 ]; }
wait_for "node 2 signs tokens again" 20 node2_after "$up_at"
touch "$run/stop"
wait "${loops[@]}" 2>/dev/null || true
loops=()
load_ms=$(( $(now_ms) - load_started ))

echo
echo "== what the clients saw (${load_ms} ms of load; node 2 killed at +$((kill_start - load_started)) ms, dead $((kill_end - kill_start)) ms later)"
printf '  %-9s %9s %6s %7s %22s %28s\n' client requests ok failed "in flight at the kill" "failed, not in flight then"
bad=0
for c in "${clients[@]}"; do
    read -r total ok failed inflight stray < <(awk -v k1="$kill_start" -v k2="$kill_end" '
        { total++; infl = ($1 <= k2 && $2 >= k1) }
        $3 == "ok" { ok++ }
        $3 != "ok" { failed++; if (!infl) stray++ }
        infl { inflight++ }
        END { print total+0, ok+0, failed+0, inflight+0, stray+0 }' "$run/$c/log")
    printf '  %-9s %9d %6d %7d %22d %28d\n' "$c" "$total" "$ok" "$failed" "$inflight" "$stray"
    bad=$((bad + stray))
done
# HAProxy's log from the kill on (it logs only requests that went wrong or were retried).
tail -n +"$((log_at_kill + 1))" "$run/haproxy.log" | grep -v '^\[' >"$run/haproxy-from-kill.log" || true
redispatched=$(grep -cE ' [0-9]+/[0-9]+/[0-9]+/[0-9]+/\+[0-9]+ ' "$run/haproxy-from-kill.log" || true)
dropped=$(grep -cE ' 502 [0-9]+ ' "$run/haproxy-from-kill.log" || true)
echo "HAProxy: $redispatched request(s) sent to node 2 after it died found it refusing connections"
echo "  (they never reached it) and were redispatched to another node; $dropped answered 502"
echo "  (node 2 died with them); its checks:"
grep -E 'auditstamp/node2 (failed|succeeded|is )|Server auditstamp/node2' "$run/haproxy-from-kill.log" |
    sed -E 's/, check duration: [0-9]+ms//; s/^/    /' || true

echo
echo "== every node's chain, audited through the balancer (verify chain --url http://$listen/node/<n>)"
for n in 1 2 3; do
    key=$(env "$(node_env "$n")" "$bin" chain verifier-key --config "$dir/node-$n/node.toml")
    echo "node $n (key $key):"
    "$bin" verify chain --url "http://$listen/node/$n" --key "$key" --ca "$ca/ca.pem" | sed 's/^/  /'
done

echo
echo "== a token of each node, verified with the one CA (openssl ts -verify -CAfile $ca/ca.pem)"
for n in 1 2 3; do
    line=$(tokens_of "$n" 0 | tail -n 1)
    if [ -z "$line" ]; then
        echo "node $n: no token of it seen" >&2
        bad=$((bad + 1))
        continue
    fi
    read -r _ _ _ _ serial digest i <<<"$line"
    client=$(grep -l " $digest " "$run"/tokens-*/log | head -n 1)
    tsr=$(dirname "$client")/$i.tsr
    printf 'node %s, serial 0x%s: ' "$n" "$serial"
    openssl ts -verify -digest "$digest" -in "$tsr" -CAfile "$ca/ca.pem" 2>&1 | tail -n 1
done

echo
if [ "$bad" -eq 0 ]; then
    echo "no request failed but those in flight at the kill; every node's chain verifies; one CA verifies every node's tokens."
else
    echo "FAILED: $bad request(s) failed outside the kill, or a node's token is missing (logs in $run)" >&2
fi
echo "state kept in $dir (logs and answers of this run in $run); the servers stop now"
[ "$bad" -eq 0 ]
