#!/usr/bin/env bash
# bench/services.sh: the services benchmarks of issue 4, in one bounded run
# (about 30 s once built).
#
#   bench/services.sh
#
# Rows, each a script under bench/services/ run with `lunet run`:
#   ping-pong call   pingpong.lua: one pair, one call at a time (1M calls or 2 s)
#   one-way send     send.lua: 2M sends in bursts of 10,000 from one sender,
#                    rate counted at the receiver
#   idle service     idle.lua: VmRSS before/after spawning 10,000 services
#                    that only set a dispatch function
# Throughput rows run BENCH_ROUNDS times (default 5) and report the median;
# all runs are listed (on 2 vCPUs the ping-pong rate varies between runs
# with where the two services land, see bench/README.md). Prints a markdown table that compares with skynet's
# figures from research/anchors.md (measured on this machine kind) and the
# goals of issue 4. BENCH_RESULTS=FILE also writes the table there.
#
# Knobs (environment): BENCH_ROUNDS=5, BENCH_CALLS=1000000, BENCH_SECONDS=2,
# BENCH_MESSAGES=2000000, BENCH_IDLE=10000, LUNET_WORKERS=N (--workers N),
# LUNET_BIN=PATH (use this lunet instead of building one).

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init services-bench

ROUNDS=${BENCH_ROUNDS:-5}
CALLS=${BENCH_CALLS:-1000000}
SECONDS_CAP=${BENCH_SECONDS:-2}
MESSAGES=${BENCH_MESSAGES:-2000000}
IDLE=${BENCH_IDLE:-10000}
ENGINE=(--log-level error)
[ -n "${LUNET_WORKERS:-}" ] && ENGINE+=(--workers "$LUNET_WORKERS")

# skynet on this machine kind (research/anchors.md) and the goals of issue 4.
SKYNET_CALLS=215000
SKYNET_SENDS=420000
SKYNET_IDLE_KB=52

lunet_binary || exit 1

# run SCRIPT ARGS...: runs one benchmark (bounded by `timeout`), prints its
# output. It runs in a subshell ($(...)), so the caller records it.
run() {
    local script=$1
    shift
    timeout 120 "$BIN" run "$script" "${ENGINE[@]}" "$@"
}
# record_run SCRIPT ARGS...: records the command line run() runs.
record_run() { record "$BIN" run "$1" "${ENGINE[@]}" "${@:2}"; }

# value KEY TEXT: the value of the line KEY=value in TEXT.
value() { printf '%s\n' "$2" | sed -n "s/^$1=//p" | head -n1; }

record_run bench/services/pingpong.lua "calls=$CALLS" "seconds=$SECONDS_CAP"
calls_runs=()
for round in $(seq "$ROUNDS"); do
    log "ping-pong call, round $round"
    out=$(run bench/services/pingpong.lua "calls=$CALLS" "seconds=$SECONDS_CAP") || { log "pingpong.lua failed"; exit 1; }
    calls_runs+=("$(value calls_per_s "$out")")
done

record_run bench/services/send.lua "messages=$MESSAGES"
sends_runs=()
for round in $(seq "$ROUNDS"); do
    log "one-way send, round $round"
    out=$(run bench/services/send.lua "messages=$MESSAGES") || { log "send.lua failed"; exit 1; }
    sends_runs+=("$(value sends_per_s "$out")")
done

log "idle services: $IDLE"
record_run bench/services/idle.lua "count=$IDLE"
out=$(run bench/services/idle.lua "count=$IDLE") || { log "idle.lua failed"; exit 1; }
idle_kb=$(value kb_per_service "$out")
idle_lua_kb=$(value lua_kb_per_service "$out")

calls=$(median "${calls_runs[@]}")
sends=$(median "${sends_runs[@]}")

thousands() { awk -v n="$1" 'BEGIN { printf "%.0fk", n / 1000 }'; }

table=$(
    cat <<EOF
| row | lunet (median) | skynet (anchors.md) | lunet / skynet | goal | verdict |
| --- | --- | --- | --- | --- | --- |
| ping-pong \`call\`, one pair | $(thousands "$calls") calls/s (runs: $(for r in "${calls_runs[@]}"; do printf '%s ' "$(thousands "$r")"; done | sed 's/ $//')) | ~215k calls/s | $(ratio "$calls" $SKYNET_CALLS)x | >= 2x | $(verdict "$(ratio "$calls" $SKYNET_CALLS)" ">=" 2) |
| one-way \`send\`, one sender | $(thousands "$sends") msgs/s (runs: $(for r in "${sends_runs[@]}"; do printf '%s ' "$(thousands "$r")"; done | sed 's/ $//')) | ~420k msgs/s | $(ratio "$sends" $SKYNET_SENDS)x | >= 2.5x | $(verdict "$(ratio "$sends" $SKYNET_SENDS)" ">=" 2.5) |
| idle service, RSS each ($IDLE spawned) | $idle_kb KB (Lua heap $idle_lua_kb KB) | ~52 KB | $(ratio "$idle_kb" $SKYNET_IDLE_KB)x | <= 20 KB | $(verdict "$idle_kb" "<=" 20) |

Machine: $(machine).

Commands:
$(for c in "${COMMANDS[@]}"; do printf -- '- `%s`\n' "$c"; done)
EOF
)

printf '%s\n' "$table"
if [ -n "${BENCH_RESULTS:-}" ]; then
    printf '## Services (%s)\n\n%s\n' "$(date +%F)" "$table" >>"$BENCH_RESULTS"
    log "appended to $BENCH_RESULTS"
fi
