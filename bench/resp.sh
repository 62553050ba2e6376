#!/usr/bin/env bash
# bench/resp.sh: server-scripts/kv.lua against redis-server with
# redis-benchmark, in the same run (issue 3; about 1 minute once built).
# kv.lua reads its commands with sock:readresp (RESP parsed in Rust, issue
# 11); its per-command Lua is the dispatch and the reply.
#
#   bench/resp.sh
#
# Both servers run side by side on loopback ports:
#   lunet serve server-scripts/kv.lua listen=127.0.0.1:0
#   redis-server --port P --bind 127.0.0.1 --save '' --appendonly no
# and each gets, in alternating order, round after round:
#   redis-benchmark -c 50 -t set,get -n 200000 -q [-P 16]
# The table has the median ops/s of the rounds for each server, test and
# pipeline depth, the ratio kv/redis (goal >= 1.0), and every run's figure.
# It is printed and appended, with the machine and the exact commands, to
# bench/results/resp-YYYY-MM-DD.md. Missing Debian packages (redis-tools,
# redis-server) are installed with apt-get. Stops every process it started.
#
# Knobs (environment), for smoke runs; published figures use the defaults:
#   RESP_BENCH_REQUESTS=200000  requests per redis-benchmark run (-n)
#   RESP_BENCH_CLIENTS=50       connections (-c)
#   RESP_BENCH_ROUNDS=3         runs per server and pipeline depth
#   BENCH_RESULTS=FILE          where to append (default bench/results/resp-DATE.md)
#   LUNET_BIN=PATH              use this lunet binary instead of building one
#   LUNET_WORKERS=N             pass --workers N to lunet

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init resp-bench

REQUESTS=${RESP_BENCH_REQUESTS:-200000}
CLIENTS=${RESP_BENCH_CLIENTS:-50}
ROUNDS=${RESP_BENCH_ROUNDS:-3}
DATE=$(date +%F)
RESULTS=${BENCH_RESULTS:-bench/results/resp-$DATE.md}

# --- tools -------------------------------------------------------------------
need=()
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    install_debian_packages "${need[@]}" || exit 1
fi

lunet_binary || exit 1

# --- servers -----------------------------------------------------------------
start_kv() { # sets KV_PID and KV_PORT once every host has loaded kv.lua
    READY='serving ' start_server kv.lua "$WORK/kv.log" \
        "$BIN" serve ${LUNET_WORKERS:+--workers "$LUNET_WORKERS"} server-scripts/kv.lua listen=127.0.0.1:0 || exit 1
    KV_PID=$SERVER_PID
    KV_PORT=${ADDR##*:}
}

start_redis() { # sets REDIS_PID and REDIS_PORT once it answers PING
    local logfile=$WORK/redis.log
    REDIS_PORT=$(free_port)
    local cmd=(redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK")
    spawn "$logfile" "${cmd[@]}"
    REDIS_PID=$SPAWNED
    for _ in $(seq 100); do
        [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && {
            record "${cmd[@]}"
            COMMANDS[-1]+="   # $(redis-server --version | grep -o 'v=[0-9.]*')"
            return 0
        }
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "redis-server did not start: ${cmd[*]}"
    sed 's/^/    /' "$logfile" >&2
    exit 1
}

start_kv
start_redis

# --- runs --------------------------------------------------------------------
# One line per run: "server pipeline test ops_per_s".
RUNS=$WORK/runs.txt
: >"$RUNS"

bench() { # NAME PORT PIPELINE
    local name=$1 port=$2 pipeline=$3
    local cmd=(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -t set,get -n "$REQUESTS" -q --csv)
    [ "$pipeline" -gt 1 ] && cmd+=(-P "$pipeline")
    if [ "$round" = 1 ]; then
        record "${cmd[@]}"
        COMMANDS[-1]+="   # $name"
    fi
    local out
    out=$(timeout 600 "${cmd[@]}" 2>"$WORK/bench.err") || {
        log "redis-benchmark failed against $name: ${cmd[*]}"
        sed 's/^/    /' "$WORK/bench.err" >&2
        exit 1
    }
    if grep -qi 'error' "$WORK/bench.err"; then
        log "redis-benchmark reported errors against $name:"
        sed 's/^/    /' "$WORK/bench.err" >&2
        exit 1
    fi
    # --csv: "SET","123456.79","0.2",... (a header line first in redis 7)
    echo "$out" | tr -d '"' | awk -F, -v n="$name" -v p="$pipeline" \
        '$1 == "SET" || $1 == "GET" { print n, p, $1, $2 }' >>"$RUNS"
}

for round in $(seq "$ROUNDS"); do
    for pipeline in 1 16; do
        # Alternate who goes first, so neither always runs on a warmer machine.
        if [ $((round % 2)) = 1 ]; then order=(kv redis); else order=(redis kv); fi
        for name in "${order[@]}"; do
            log "round $round/$ROUNDS, -P $pipeline, $name"
            if [ "$name" = kv ]; then bench kv.lua "$KV_PORT" "$pipeline"; else bench redis-server "$REDIS_PORT" "$pipeline"; fi
        done
    done
done

# --- report ------------------------------------------------------------------
TABLE=$(python3 - "$RUNS" "$CLIENTS" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    server, pipeline, test, ops = line.split()
    runs.setdefault((server, int(pipeline), test), []).append(float(ops))
clients = sys.argv[2]
lines = [
    "| test | pipeline | kv.lua ops/s | redis-server ops/s | kv/redis | runs kv.lua / redis-server |",
    "| --- | --- | --- | --- | --- | --- |",
]
for pipeline in (1, 16):
    for test in ("SET", "GET"):
        kv = runs.get(("kv.lua", pipeline, test), [])
        redis = runs.get(("redis-server", pipeline, test), [])
        if not kv or not redis:
            lines.append(f"| {test} | {pipeline} | - | - | - | missing |")
            continue
        a, b = statistics.median(kv), statistics.median(redis)
        each = lambda xs: ", ".join(f"{x:,.0f}" for x in xs)
        lines.append(
            f"| {test} -c {clients} | {pipeline} | {a:,.0f} | {b:,.0f} | {a / b:.2f} | {each(kv)} / {each(redis)} |"
        )
print("\n".join(lines))
EOF
) || { log "could not build the table"; exit 1; }

echo "$TABLE"

mkdir -p "$(dirname "$RESULTS")"
{
    echo
    echo "## bench/resp.sh, $(date -u '+%F %T UTC')"
    echo
    echo "$TABLE"
    echo
    echo "Median of $ROUNDS runs per cell; servers alternate who runs first in each round. Both"
    echo "servers and redis-benchmark share the machine's cores. Goal: kv/redis >= 1.0."
    echo
    echo "- $(machine); lunet: $BIN"
    echo
    echo '```'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
} >>"$RESULTS"
log "appended to $RESULTS"
