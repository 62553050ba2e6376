#!/usr/bin/env bash
# bench/procs.sh: many idle connections on `lunet serve --processes N`
# (issue 13; about 1 minute once built).
#
#   bench/procs.sh
#
# One process may hold at most its fd limit (20,000 here), so the server
# runs as PROCS processes (default 5) of echo.lua, and PROCS `lunet load
# --hold` processes open HOLD (default 19,000) idle connections each from
# the loopback addresses 127.0.0.1-127.0.0.8. Once the server processes
# hold every connection (their fd counts), the RSS of all of them is read:
#
#   RSS per connection = (sum of the processes' RSS growth) / connections
#
# (goal: >= 95,000 held, <= 2 KB each). Prints a markdown table and writes it
# with the machine and the commands to BENCH_RESULTS (default
# bench/results/procs-YYYY-MM-DD.md). Stops every process it started.
#
# Knobs (environment), for smoke runs; published figures use the defaults:
#   PROCS_BENCH_PROCESSES=5   server processes, and load processes
#   PROCS_BENCH_HOLD=19000    idle connections per load process
#   PROCS_BENCH_SECONDS=30    how long each load process holds them at most
#   LUNET_BIN=PATH            use this lunet binary instead of building one

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init procs-bench

PROCESSES=${PROCS_BENCH_PROCESSES:-5}
HOLD=${PROCS_BENCH_HOLD:-19000}
SECONDS_HELD=${PROCS_BENCH_SECONDS:-30}
SOURCE=127.0.0.1-127.0.0.8
DATE=$(date +%F)
RESULTS=${BENCH_RESULTS:-bench/results/procs-$DATE.md}
TOTAL=$((PROCESSES * HOLD))

ulimit -n "$(ulimit -Hn)" 2>/dev/null
hard=$(ulimit -n)
if [ "$hard" != unlimited ] && [ "$HOLD" -gt $((hard - 200)) ]; then
    log "the fd limit is $hard; each load process holds $((hard - 200)) instead of $HOLD"
    HOLD=$((hard - 200))
    TOTAL=$((PROCESSES * HOLD))
fi

lunet_binary || exit 1

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
children() { pgrep -P "$1" | tr '\n' ' '; }
sum_over() { # FUNCTION PID...: the sum of FUNCTION over the pids
    local fn=$1 total=0 pid
    shift
    for pid in "$@"; do total=$((total + $($fn "$pid"))); done
    echo "$total"
}

# --- server ------------------------------------------------------------------
# A connection beyond a process's fds is refused by accept; --max-conns
# leaves room for the process's own fds.
server=("$BIN" serve server-scripts/echo.lua listen=127.0.0.1:0 --processes "$PROCESSES"
    --workers 1 --hosts 1 --max-conns $((hard - 100)))
READY="serving with $PROCESSES processes" start_server lunet "$WORK/server.log" "${server[@]}" || exit 1
SUPERVISOR=$SERVER_PID
read -r -a PROCS <<<"$(children "$SUPERVISOR")"
if [ "${#PROCS[@]}" != "$PROCESSES" ]; then
    log "expected $PROCESSES server processes, found ${#PROCS[@]}: ${PROCS[*]}"
    exit 1
fi
sleep 1
BASE_RSS=$(sum_over rss_kb "${PROCS[@]}")
BASE_FDS=$(sum_over fd_count "${PROCS[@]}")
log "server: $PROCESSES processes (${PROCS[*]}) on $ADDR, RSS $BASE_RSS KB, $BASE_FDS fds"

# --- load --------------------------------------------------------------------
LOADERS=()
for i in $(seq "$PROCESSES"); do
    load=("$BIN" load --hold "$HOLD" --source "$SOURCE" --connect-rate 5000
        -d "${SECONDS_HELD}s" --json "$WORK/load-$i.json" "$ADDR")
    if [ "$i" = 1 ]; then
        record "${load[@]}"
        COMMANDS[-1]+="   # x $PROCESSES, at once"
    fi
    spawn "$WORK/load-$i.log" "${load[@]}"
    LOADERS+=("$SPAWNED")
done

held=0 rss=$BASE_RSS peak_fds=0
deadline=$((SECONDS + SECONDS_HELD))
while [ "$SECONDS" -lt "$deadline" ]; do
    fds=$(sum_over fd_count "${PROCS[@]}")
    now_rss=$(sum_over rss_kb "${PROCS[@]}")
    [ "$fds" -gt "$peak_fds" ] && peak_fds=$fds
    if [ $((fds - BASE_FDS)) -ge "$TOTAL" ]; then
        sleep 1 # the last accepts' sessions start
        held=$(($(sum_over fd_count "${PROCS[@]}") - BASE_FDS))
        rss=$(sum_over rss_kb "${PROCS[@]}")
        break
    fi
    held=$((fds - BASE_FDS)) rss=$now_rss
    sleep 0.5
done
PER_PROCESS=""
for pid in "${PROCS[@]}"; do
    PER_PROCESS+="${PER_PROCESS:+, }$(($(fd_count "$pid") - BASE_FDS / PROCESSES))"
done
for pid in "${LOADERS[@]}"; do stop_group "$pid"; done
up=0 errors=0
for i in $(seq "$PROCESSES"); do
    read -r u e < <(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["peak_up"], d["errors"]["total"])' "$WORK/load-$i.json" 2>/dev/null || echo "0 0")
    up=$((up + u)) errors=$((errors + e))
done
RESTARTS=$(grep -c 'starting it again' "$WORK/server.log")
stop_group "$SUPERVISOR" 10

PER_CONN=$(python3 -c 'import sys; b, h, n = map(int, sys.argv[1:]); print(f"{(h - b) / n:.2f}" if n else "-")' "$BASE_RSS" "$rss" "$held")
log "held $held of $TOTAL (load peak up $up, $errors errors); RSS $BASE_RSS -> $rss KB: $PER_CONN KB per connection"

TABLE=$(
    echo "| benchmark | lunet | goal | verdict |"
    echo "| --- | --- | --- | --- |"
    echo "| idle connections held by \`lunet serve --processes $PROCESSES\` (echo.lua), $PROCESSES x \`lunet load --hold $HOLD --source $SOURCE\` | $(fmt_int "$held") of $(fmt_int "$TOTAL") (per process: $PER_PROCESS; load: peak up $(fmt_int "$up"), $errors errors; $RESTARTS restarts) | ≥ 95,000 | $(verdict "$held" ">=" 95000) |"
    echo "| RSS per idle connection, sum over the $PROCESSES processes | $PER_CONN KB/conn (RSS $(fmt_int "$BASE_RSS") -> $(fmt_int "$rss") KB) | ≤ 2 KB/conn | $(verdict "$PER_CONN" "<=" 2) |"
)
write_results "lunet serve --processes: idle connections, $DATE" "fd limit per process: $hard"
