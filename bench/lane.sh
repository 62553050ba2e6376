#!/usr/bin/env bash
# bench/lane.sh: the blocking-task lane's two figures from issue 3, in one
# bounded run (about 75 s once built).
#
#   bench/lane.sh
#
# 1. Head-of-line: bench/lane_server.lua answers "f" at once and "s" after a
#    20 ms blocking call on the lane (lunet.lane.sleep(20)). bench/lane_client.py
#    sends fast requests at a fixed rate (open loop, 1000/s) with no slow ones,
#    then the same fast rate plus slow requests making up 10% of all requests.
#    Reported: p99 of the fast requests in both runs and the ratio mixed /
#    fast-only (goal <= 2). Rounds alternate (fast-only, mixed, ...), each
#    against a freshly started server; the ratio uses the median p99 of each.
# 2. SQLite writes/s: 50 connections in a closed loop, each sending "w" (one
#    INSERT through db:exec on the lane, acknowledged after the commit) and
#    waiting for "ok". With the default 4 lane threads and with 1.
#
# Prints the table and appends it, with the machine and the exact commands,
# to bench/results/lane-YYYY-MM-DD.md. Stops every process it started.
#
# Knobs (environment), for smoke runs; published figures use the defaults:
#   LANE_BENCH_DURATION=6   measured seconds of each run (plus 1 s warmup)
#   LANE_BENCH_ROUNDS=3     head-of-line rounds (each: fast-only, then mixed)
#   LANE_BENCH_RATE=1000    fast requests per second
#   BENCH_RESULTS=FILE      where to append (default bench/results/lane-DATE.md)
#   LUNET_BIN=PATH          use this lunet binary instead of building one

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init lane-bench

DURATION=${LANE_BENCH_DURATION:-6}
ROUNDS=${LANE_BENCH_ROUNDS:-3}
RATE=${LANE_BENCH_RATE:-1000}
DATE=$(date +%F)
RESULTS=${BENCH_RESULTS:-bench/results/lane-$DATE.md}

# lane_server LOG ARGS...: a fresh lunet serve bench/lane_server.lua ARGS;
# sets SERVER and ADDR once every host has loaded the script. The bench
# cannot go on without it.
lane_server() {
    local logfile=$1
    shift
    READY='serving ' start_server lane_server.lua "$logfile" \
        "$BIN" serve bench/lane_server.lua listen=127.0.0.1:0 "$@" || exit 1
    SERVER=$SERVER_PID
}

lunet_binary || exit 1
command -v python3 >/dev/null || { log "python3 is required for the client"; exit 1; }
CLIENT=(python3 bench/lane_client.py)

# --- 1. head-of-line ---------------------------------------------------------
HOL_JSON=()
for round in $(seq "$ROUNDS"); do
    for pct in 0 10; do
        log "head-of-line round $round/$ROUNDS, slow share $pct%"
        lane_server "$WORK/hol-$round-$pct.log"
        cmd=("${CLIENT[@]}" hol --addr "$ADDR" --fast-rate "$RATE" --slow-pct "$pct" -d "$DURATION" --warmup 1)
        record "${cmd[@]}"
        out=$("${cmd[@]}") || { log "client failed: ${cmd[*]}"; exit 1; }
        HOL_JSON+=("$out")
        stop_group "$SERVER"
    done
done

# --- 2. SQLite writes/s --------------------------------------------------------
WRITE_JSON=()
for threads in 4 1; do
    log "SQLite writes, 50 writers, --lane-threads $threads"
    rm -f "$WORK"/writes.sqlite*
    lane_server "$WORK/writes-$threads.log" db="$WORK/writes.sqlite" --lane-threads "$threads"
    cmd=("${CLIENT[@]}" writes --addr "$ADDR" -c 50 -d "$DURATION" --warmup 1)
    record "${cmd[@]}"
    out=$("${cmd[@]}") || { log "client failed: ${cmd[*]}"; exit 1; }
    stop_group "$SERVER"
    # Every acknowledged insert must be in the file (plus warmup inserts).
    rows=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from writes").fetchone()[0])' "$WORK/writes.sqlite")
    WRITE_JSON+=("$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["threads"]=int(sys.argv[2]); d["rows"]=int(sys.argv[3]); print(json.dumps(d))' "$out" "$threads" "$rows")")
done

# --- report ----------------------------------------------------------------------
TABLE=$(python3 - "$RATE" "$DURATION" "${#HOL_JSON[@]}" "${HOL_JSON[@]}" "${WRITE_JSON[@]}" <<'EOF'
import json, statistics, sys
rate, duration, n_hol = sys.argv[1], sys.argv[2], int(sys.argv[3])
hol = [json.loads(x) for x in sys.argv[4:4 + n_hol]]
writes = [json.loads(x) for x in sys.argv[4 + n_hol:]]
fast_only = [r for r in hol if r["slow_pct"] == 0]
mixed = [r for r in hol if r["slow_pct"] > 0]
def runs(rows, key):
    return ", ".join(f"{r[key]:,.0f}" for r in rows)
a = statistics.median(r["p99_us"] for r in fast_only)
b = statistics.median(r["p99_us"] for r in mixed)
ratio = b / a if a else float("nan")
errors = sum(r["errors"] for r in hol)
lines = [
    "| benchmark | figure | runs | goal |",
    "| --- | --- | --- | --- |",
    f"| head-of-line: fast p99, fast only ({rate}/s open loop) | {a:,.0f} us (median) | p99: {runs(fast_only, 'p99_us')}; p50: {runs(fast_only, 'p50_us')} | - |",
    f"| head-of-line: fast p99, +10% slow (20 ms lane call) | {b:,.0f} us (median) | p99: {runs(mixed, 'p99_us')}; p50: {runs(mixed, 'p50_us')}; slow answered: {runs(mixed, 'slow')} | - |",
    f"| head-of-line: ratio mixed / fast only | {ratio:.2f} | errors: {errors} | <= 2 ({'met' if ratio <= 2 else 'NOT met'}) |",
]
for w in writes:
    lines.append(
        f"| SQLite inserts/s, 50 writers, --lane-threads {w['threads']} | {w['inserts_per_s']:,} /s | "
        f"acked {w['acked']:,} in {duration} s, errors {w['errors']}, rows in file {w['rows']:,}, client CPU {w['client_cpu_pct']}% | - |"
    )
print("\n".join(lines))
EOF
) || { log "could not build the table"; exit 1; }

echo "$TABLE"

mkdir -p "$(dirname "$RESULTS")"
{
    echo
    echo "## bench/lane.sh, $(date -u '+%F %T UTC')"
    echo
    echo "$TABLE"
    echo
    echo "Head-of-line: open loop, fast requests at a fixed rate in both runs, slow requests on top"
    echo "in the mixed run (10% of all requests); latency from send to answer, measured by a Python"
    echo "asyncio client on the same cores as the server. Each run has its own freshly started server;"
    echo "rounds alternate fast-only and mixed. Writes: closed loop, an INSERT acknowledged after its"
    echo "commit (WAL, synchronous=NORMAL); rows in file counts warmup inserts too."
    echo
    echo "- $(machine); lunet: $BIN"
    echo
    echo '```'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
} >>"$RESULTS"
log "appended to $RESULTS"
