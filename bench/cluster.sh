#!/usr/bin/env bash
# bench/cluster.sh: the cluster's benchmarks (issue 12), in one bounded run
# (about a minute once built). One nats-server on loopback; lunet nodes
# run bench/cluster/echo.lua (the served name) and caller.lua.
#
#   bench/cluster.sh
#
# Rows:
#   calls, 1 in flight    cross-node lunet.call(ref, 1), one at a time, vs
#                         the limit: nats-raw request/reply (Rust, no Lua,
#                         bench/src/bin/nats-raw.rs) on the same server
#   calls, 32 in flight   the same with 32 calls (sessions) at once
#   sends                 cross-node lunet.send(ref, "sent") vs nats-raw
#                         publish -> subscribe, one-way messages/s
#   node death            kill -9 of the serving node with a call pending:
#                         ms until the call raises, until nodedown fires
# Throughput rows run BENCH_ROUNDS times (default 3), alternating sides, and
# report the median. Prints a markdown table; BENCH_RESULTS=FILE also
# appends it there.
#
# Knobs (environment): BENCH_ROUNDS=3, CLUSTER_CALLS=20000 (1 in flight;
# 32 in flight makes 5x as many), CLUSTER_SENDS=200000, LUNET_WORKERS=N,
# LUNET_BIN=PATH (use this lunet instead of building one).

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init cluster-bench

ROUNDS=${BENCH_ROUNDS:-3}
CALLS=${CLUSTER_CALLS:-20000}
SENDS=${CLUSTER_SENDS:-200000}
WIDE=32
ENGINE=(--log-level warn)
[ -n "${LUNET_WORKERS:-}" ] && ENGINE+=(--workers "$LUNET_WORKERS")

command -v nats-server >/dev/null || { log "nats-server is not installed (apt-get install nats-server)"; exit 1; }
lunet_binary || exit 1
log "cargo build --release -p lunet-bench --bin nats-raw"
cargo build --release -p lunet-bench --bin nats-raw >&2 || { log "nats-raw does not build"; exit 1; }
RAW=target/release/nats-raw

PORT=$(free_port)
URL=nats://127.0.0.1:$PORT
record nats-server -a 127.0.0.1 -p "$PORT" -js -sd "$WORK/js"
spawn "$WORK/nats.log" nats-server -a 127.0.0.1 -p "$PORT" -js -sd "$WORK/js"
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

# start_node NAME LOG ARGS...: a lunet node running echo.lua, once it has
# joined (NODE_PID).
start_node() {
    local name=$1 log=$2
    shift 2
    record "$BIN" run bench/cluster/echo.lua "$@" --cluster "$URL" --node "$name"
    spawn "$log" "$BIN" run bench/cluster/echo.lua "$@" --cluster "$URL" --node "$name" --log-level info ${LUNET_WORKERS:+--workers "$LUNET_WORKERS"}
    NODE_PID=$SPAWNED
    for _ in $(seq 100); do
        grep -q "joined" "$log" 2>/dev/null && return 0
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "node $name did not join: $(tail -c 300 "$log")"
    exit 1
}
caller() { timeout 300 "$BIN" run bench/cluster/caller.lua "$@" --cluster "$URL" --node bench-caller "${ENGINE[@]}"; }
value() { printf '%s\n' "$2" | sed -n "s/^$1=//p" | head -n1; }
thousands() { awk -v n="$1" 'BEGIN { printf "%.1fk", n / 1000 }'; }
runs() { for r in "$@"; do printf '%s ' "$(thousands "$r")"; done | sed 's/ $//'; }

start_node bench-echo "$WORK/echo.log"
record "$RAW" reply 127.0.0.1:"$PORT" bench.echo
spawn "$WORK/raw-reply.log" "$RAW" reply 127.0.0.1:"$PORT" bench.echo
record "$BIN" run bench/cluster/caller.lua mode=calls "count=$CALLS" concurrency=1 --cluster "$URL" --node bench-caller
record "$RAW" request 127.0.0.1:"$PORT" bench.echo "$CALLS" 1
record "$BIN" run bench/cluster/caller.lua mode=sends "count=$SENDS" --cluster "$URL" --node bench-caller
record "$RAW" sends 127.0.0.1:"$PORT" "$SENDS"

one=() one_raw=() wide=() wide_raw=() sends=() sends_raw=()
for round in $(seq "$ROUNDS"); do
    log "round $round: calls, 1 in flight"
    out=$(caller mode=calls "count=$CALLS" concurrency=1) || { log "caller.lua failed: $out"; exit 1; }
    one+=("$(value calls_per_s "$out")")
    out=$("$RAW" request 127.0.0.1:"$PORT" bench.echo "$CALLS" 1) || exit 1
    one_raw+=("$(value calls_per_s "$out")")
    log "round $round: calls, $WIDE in flight"
    out=$(caller mode=calls "count=$((CALLS * 5))" "concurrency=$WIDE") || { log "caller.lua failed: $out"; exit 1; }
    wide+=("$(value calls_per_s "$out")")
    out=$("$RAW" request 127.0.0.1:"$PORT" bench.echo "$((CALLS * 5))" "$WIDE") || exit 1
    wide_raw+=("$(value calls_per_s "$out")")
    log "round $round: sends"
    out=$(caller mode=sends "count=$SENDS") || { log "caller.lua failed: $out"; exit 1; }
    sends+=("$(value sends_per_s "$out")")
    out=$("$RAW" sends 127.0.0.1:"$PORT" "$SENDS") || exit 1
    sends_raw+=("$(value sends_per_s "$out")")
    # The echo node counts every send: start it again for the next round.
    stop_group "$NODE_PID"
    start_node bench-echo "$WORK/echo.log"
done

log "node death"
start_node bench-victim "$WORK/victim.log" name=victim
record "$BIN" run bench/cluster/caller.lua mode=death target=victim "victim=$NODE_PID" --cluster "$URL" --node bench-caller
out=$(caller mode=death target=victim "victim=$NODE_PID") || { log "caller.lua (death) failed: $out"; exit 1; }
failed_ms=$(value call_failed_ms "$out")
down_ms=$(value nodedown_ms "$out")
worst_ms=$(( failed_ms > down_ms ? failed_ms : down_ms ))

m_one=$(median "${one[@]}") m_one_raw=$(median "${one_raw[@]}")
m_wide=$(median "${wide[@]}") m_wide_raw=$(median "${wide_raw[@]}")
m_sends=$(median "${sends[@]}") m_sends_raw=$(median "${sends_raw[@]}")
r_one=$(ratio "$m_one" "$m_one_raw") r_wide=$(ratio "$m_wide" "$m_wide_raw") r_sends=$(ratio "$m_sends" "$m_sends_raw")

table=$(
    cat <<EOF2
| row | lunet (median) | limit: nats-raw (median) | ratio | goal | verdict |
| --- | --- | --- | --- | --- | --- |
| cross-node \`lunet.call\`, 1 in flight | $(thousands "$m_one") calls/s (runs: $(runs "${one[@]}")) | $(thousands "$m_one_raw") calls/s (runs: $(runs "${one_raw[@]}")) | ${r_one}x | >= 0.7x | $(verdict "$r_one" ">=" 0.7) |
| cross-node \`lunet.call\`, $WIDE in flight | $(thousands "$m_wide") calls/s (runs: $(runs "${wide[@]}")) | $(thousands "$m_wide_raw") calls/s (runs: $(runs "${wide_raw[@]}")) | ${r_wide}x | >= 0.7x | $(verdict "$r_wide" ">=" 0.7) |
| cross-node one-way \`lunet.send\` | $(thousands "$m_sends") sends/s (runs: $(runs "${sends[@]}")) | $(thousands "$m_sends_raw") msgs/s (runs: $(runs "${sends_raw[@]}")) | ${r_sends}x | - | - |
| node death (kill -9) -> pending call raises / nodedown | $failed_ms ms / $down_ms ms | - | - | <= 3000 ms | $(verdict "$worst_ms" "<=" 3000) |

Machine: $(machine).

Commands:
$(for c in "${COMMANDS[@]}"; do printf -- '- `%s`\n' "$c"; done)
EOF2
)

emit_table "Cluster" "$table"
