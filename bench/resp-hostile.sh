#!/usr/bin/env bash
# bench/resp-hostile.sh: the hostile RESP run (big values, a slow reader,
# RST mid-write; bench/resp_hostile.py) against server-scripts/kv.lua and
# redis-server, each fresh: peak RSS, and RSS after FLUSHALL once the
# clients have left (issue 13; about 1 minute once built).
#
#   bench/resp-hostile.sh
#
# Goals: kv.lua's peak RSS <= 1.5x redis-server's; its RSS after FLUSHALL
# within 2x of its own at the start. Prints a markdown table; writes it with
# the machine and the commands to BENCH_RESULTS (default
# bench/results/resp-hostile-YYYY-MM-DD.md).
#
# Knobs (environment):
#   HOSTILE_ROUNDS=4        rounds of the workload
#   HOSTILE_MIB=16          MiB of big values per round
#   LUNET_BIN=PATH          use this lunet binary instead of building one
#   LUNET_LABEL=TEXT        what to call it in the table (default kv.lua)
#   LUNET_WORKERS=N         pass --workers N to lunet

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init resp-hostile

ROUNDS=${HOSTILE_ROUNDS:-4}
MIB=${HOSTILE_MIB:-16}
LABEL=${LUNET_LABEL:-kv.lua}
DATE=$(date +%F)
RESULTS=${BENCH_RESULTS:-bench/results/resp-hostile-$DATE.md}

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
    install_debian_packages "${need[@]}" || exit 1
fi
lunet_binary || exit 1

# run NAME PID ADDR: the driver against one server; its JSON line in OUT[NAME]
declare -A OUT
run() {
    local name=$1 pid=$2 addr=$3
    local cmd=(python3 bench/resp_hostile.py "$addr" "$pid" --rounds "$ROUNDS" --mib "$MIB")
    record "${cmd[@]}"
    COMMANDS[-1]+="   # $name"
    log "$name: ${cmd[*]}"
    OUT[$name]=$(timeout 300 "${cmd[@]}" 2>"$WORK/$name.err" | tail -1)
    if [ -z "${OUT[$name]}" ]; then
        log "the workload failed against $name: $(tail -c 400 "$WORK/$name.err")"
        exit 1
    fi
    log "$name: ${OUT[$name]}"
}

READY='serving ' start_server kv.lua "$WORK/kv.log" \
    "$BIN" serve ${LUNET_WORKERS:+--workers "$LUNET_WORKERS"} server-scripts/kv.lua listen=127.0.0.1:0 || exit 1
run kv "$SERVER_PID" "$ADDR"
stop_group "$SERVER_PID"

REDIS_PORT=$(free_port)
redis=(redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK")
record "${redis[@]}"
COMMANDS[-1]+="   # $(redis-server --version | grep -o 'v=[0-9.]*')"
spawn "$WORK/redis.log" "${redis[@]}"
REDIS_PID=$SPAWNED
for _ in $(seq 100); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
done
run redis "$REDIS_PID" "127.0.0.1:$REDIS_PORT"
stop_group "$REDIS_PID"

field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "${OUT[$1]}" "$2"; }
KV_START=$(field kv start_kib) KV_PEAK=$(field kv peak_kib) KV_AFTER=$(field kv after_flush_kib)
R_START=$(field redis start_kib) R_PEAK=$(field redis peak_kib) R_AFTER=$(field redis after_flush_kib)
PEAK_RATIO=$(ratio "$KV_PEAK" "$R_PEAK")
BACK_RATIO=$(ratio "$KV_AFTER" "$KV_START")

TABLE=$(
    echo "| benchmark | lunet | reference | reference figure | lunet / reference | goal | verdict |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    echo "| RESP hostile run ($ROUNDS rounds of $MIB x 1 MiB SETs, a slow reader of 2 x $MIB GETs, 16 RSTs mid-write), peak RSS | $LABEL $(mb "$KV_PEAK") MB | redis-server | $(mb "$R_PEAK") MB | $PEAK_RATIO | ≤ 1.5x | $(verdict "$PEAK_RATIO" "<=" 1.5) |"
    echo "| RSS after FLUSHALL, clients gone, vs at the start | $LABEL $(mb "$KV_START") -> $(mb "$KV_AFTER") MB | redis-server | $(mb "$R_START") -> $(mb "$R_AFTER") MB | $BACK_RATIO (own start) | ≤ 2x | $(verdict "$BACK_RATIO" "<=" 2) |"
)
write_results "RESP hostile run: $LABEL vs redis-server, $DATE" "lunet: $BIN"
printf '\nDriver output (KiB): %s %s; redis-server %s\n' "$LABEL" "${OUT[kv]}" "${OUT[redis]}" >>"$RESULTS"
