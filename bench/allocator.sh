#!/usr/bin/env bash
# bench/allocator.sh: the global allocator of lunet, four ways, on the rows
# its choice moves (issue 13; about 6 minutes once built):
#
#   glibc     lunet as it ships: glibc's malloc and a thread that calls
#             malloc_trim once the heap's in-use bytes fell (src/allocator.rs)
#   stock     glibc's malloc as it comes, no trimming: the same binary with
#             GLIBC_TUNABLES set (lunet then leaves malloc alone)
#   fixed     glibc with a fixed mapping threshold of 128 KiB, every large
#             block its own mapping (GLIBC_TUNABLES=glibc.malloc.mmap_threshold)
#   mimalloc  lunet built with `--features mimalloc`
#
# on:
#   1. the RESP hostile run (bench/resp-hostile.sh): peak RSS, and RSS
#      after FLUSHALL once the clients have left (all four);
#   2. the fan-out to a subscriber that never reads (bench/fanout.sh; all
#      four);
#   3. throughput (glibc, fixed, mimalloc; stock runs glibc's code but for
#      a thread that wakes once a second): line echo, echo-load -c 50
#      --size 64 against echo.lua; HTTP, wrk -t2 -c100 against
#      http_hello.lua; large values, redis-benchmark -c 10 -d 262144 -t
#      set,get against kv.lua. ROUNDS runs of each, the variants in turn
#      (rotating who goes first), a fresh server per run; the median.
#
#   bench/allocator.sh
#
# Prints a markdown table; writes it, every run, the machine and the
# commands to BENCH_RESULTS (default bench/results/allocator-YYYY-MM-DD.md).
#
# Knobs (environment):
#   ALLOC_BENCH_ROUNDS=4        throughput runs per variant and test
#   BENCH_DURATION=5s           each echo-load and wrk run
#   GLIBC_BIN=PATH MIMALLOC_BIN=PATH   use these binaries instead of building

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init allocator-bench

ROUNDS=${ALLOC_BENCH_ROUNDS:-4}
DURATION=${BENCH_DURATION:-5s}
DATE=$(date +%F)
RESULTS=${BENCH_RESULTS:-bench/results/allocator-$DATE.md}

# --- builds ------------------------------------------------------------------
if [ -z "${GLIBC_BIN:-}" ] || [ -z "${MIMALLOC_BIN:-}" ]; then
    log "cargo build --release -p lunet --features mimalloc, then without"
    cargo build --release -p lunet --features mimalloc >&2 || exit 1
    cp target/release/lunet "$WORK/lunet-mimalloc"
    cargo build --release -p lunet -p lunet-bench >&2 || exit 1
    cp target/release/lunet "$WORK/lunet-glibc"
    GLIBC_BIN=$WORK/lunet-glibc MIMALLOC_BIN=$WORK/lunet-mimalloc
fi
[ -x target/release/echo-load ] || cargo build --release -p lunet-bench >&2 || exit 1
command -v wrk >/dev/null 2>&1 || install_debian_packages wrk || exit 1
command -v redis-benchmark >/dev/null 2>&1 || install_debian_packages redis-tools || exit 1

VARIANTS=(glibc stock fixed mimalloc)
FAST=(glibc fixed mimalloc) # the throughput runs
declare -A BINS=([glibc]=$GLIBC_BIN [stock]=$GLIBC_BIN [fixed]=$GLIBC_BIN [mimalloc]=$MIMALLOC_BIN)
# What each variant's server runs under (`env` arguments).
declare -A ENVS=([glibc]="" [stock]="GLIBC_TUNABLES=glibc.malloc.perturb=0"
    [fixed]="GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072" [mimalloc]="")

# --- memory ------------------------------------------------------------------
declare -A CELL # VARIANT:ROW -> the cell
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
for name in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086
    env ${ENVS[$name]} LUNET_BIN=${BINS[$name]} LUNET_LABEL="kv.lua ($name)" BENCH_RESULTS="$WORK/hostile-$name.md" \
        bash bench/resp-hostile.sh >"$WORK/hostile-$name.out" || { log "resp-hostile.sh failed ($name)"; exit 1; }
    kv=$(sed -n 's/^Driver output (KiB): kv.lua ([a-z]*) \({.*}\); redis-server \({.*}\)$/\1/p' "$WORK/hostile-$name.md")
    redis=$(sed -n 's/^Driver output (KiB): kv.lua ([a-z]*) \({.*}\); redis-server \({.*}\)$/\2/p' "$WORK/hostile-$name.md")
    peak=$(field "$kv" peak_kib) start=$(field "$kv" start_kib) after=$(field "$kv" after_flush_kib)
    CELL[$name:peak]="$(mb "$peak") MB ($(ratio "$peak" "$(field "$redis" peak_kib)")x redis-server's $(mb "$(field "$redis" peak_kib)"))"
    CELL[$name:after]="$(mb "$start") -> $(mb "$after") MB ($(ratio "$after" "$start")x)"
    # shellcheck disable=SC2086
    env ${ENVS[$name]} LUNET_BIN=${BINS[$name]} BENCH_RESULTS="$WORK/fanout-$name.md" \
        bash bench/fanout.sh >"$WORK/fanout-$name.out" || { log "fanout.sh failed ($name)"; exit 1; }
    CELL[$name:fanout]=$(grep '^| one subscriber' "$WORK/fanout-$name.out" | cut -d'|' -f3 | sed 's/; writes.*//; s/^ *//')
done

# --- throughput --------------------------------------------------------------
declare -A RUNS
keep() { RUNS[$1]="${RUNS[$1]:-}${RUNS[$1]:+ }$2"; }
serve() { # VARIANT SCRIPT: sets SERVER_PID and ADDR
    # shellcheck disable=SC2086
    READY='serving ' start_server "$2" "$WORK/server.log" env ${ENVS[$1]} "${BINS[$1]}" serve "$2" listen=127.0.0.1:0
}
for round in $(seq "$ROUNDS"); do
    shift_by=$(((round - 1) % ${#FAST[@]}))
    order=("${FAST[@]:$shift_by}" "${FAST[@]:0:$shift_by}")
    for name in "${order[@]}"; do
        serve "$name" server-scripts/echo.lua || exit 1
        load=(target/release/echo-load --addr "$ADDR" -c 50 --size 64 -d "$DURATION" --warmup 1s)
        [ "$round" = 1 ] && record "${load[@]}"
        rate=$("${load[@]}" 2>/dev/null | grep '^{' | tail -1 | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["rate"]))')
        stop_group "$SERVER_PID"
        keep "echo:$name" "$rate"
        serve "$name" server-scripts/http_hello.lua || exit 1
        load=(wrk -t2 -c100 -d "$DURATION" "http://$ADDR/")
        [ "$round" = 1 ] && record "${load[@]}"
        rate=$("${load[@]}" 2>/dev/null | awk '/^Requests\/sec/ {printf "%.0f", $2}')
        stop_group "$SERVER_PID"
        keep "http:$name" "$rate"
        serve "$name" server-scripts/kv.lua || exit 1
        load=(redis-benchmark -h 127.0.0.1 -p "${ADDR##*:}" -c 10 -n 2000 -d 262144 -t set,get -q --csv)
        [ "$round" = 1 ] && record "${load[@]}"
        rate=$("${load[@]}" 2>/dev/null | tr -d '"' | awk -F, '$1 == "SET" || $1 == "GET" { sum += $2 } END { printf "%.0f", sum / 2 }')
        stop_group "$SERVER_PID"
        keep "big:$name" "$rate"
        log "round $round, $name: echo ${RUNS[echo:$name]##* } rt/s, http ${RUNS[http:$name]##* } req/s, 256 KiB values ${RUNS[big:$name]##* } ops/s"
    done
done
for test in echo http big; do
    # shellcheck disable=SC2086
    glibc=$(median ${RUNS[$test:glibc]})
    for name in "${FAST[@]}"; do
        # shellcheck disable=SC2086
        value=$(median ${RUNS[$test:$name]})
        CELL[$name:$test]="$(fmt_int "$value") ($(ratio "$value" "$glibc")x; runs: ${RUNS[$test:$name]})"
    done
    CELL[stock:$test]="(glibc's code)"
done

TABLE=$(
    echo "| row | glibc + trimming (lunet) | stock glibc | glibc, fixed 128 KiB mapping threshold | mimalloc | goal |"
    echo "| --- | --- | --- | --- | --- | --- |"
    line() { # ROW-KEY LABEL GOAL
        printf '| %s |' "$2"
        for name in "${VARIANTS[@]}"; do printf ' %s |' "${CELL[$name:$1]:--}"; done
        printf ' %s |\n' "$3"
    }
    line peak "RESP hostile run, peak RSS (bench/resp-hostile.sh)" "≤ 1.5x redis-server"
    line after "RSS at the start -> after FLUSHALL, clients gone" "≤ 2x the start"
    line fanout "fan-out of 50,000 x 1 KB to a subscriber that never reads (bench/fanout.sh)" "bounded by --high-water"
    line echo "line echo, echo-load -c 50 --size 64, rt/s, median of $ROUNDS (x glibc)" "≥ 0.97x"
    line http "HTTP hello, wrk -t2 -c100, req/s, median of $ROUNDS (x glibc)" "≥ 0.97x"
    line big "kv.lua, 256 KiB values, redis-benchmark -c 10 -d 262144 -t set,get, ops/s (mean of SET and GET), median of $ROUNDS (x glibc)" "≥ 0.97x"
)
mkdir -p "$(dirname "$RESULTS")"
{
    echo "# lunet's allocator: glibc + trimming, stock glibc, fixed threshold, mimalloc; $DATE"
    echo
    echo "$TABLE"
    echo
    echo "- $(machine)"
    echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo '```'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
    for name in "${VARIANTS[@]}"; do
        echo
        echo "### $name (${ENVS[$name]:-no environment})"
        echo
        sed -e '/./,$!d' -e 's/^# \(.*\)/**\1**/' "$WORK/hostile-$name.md" "$WORK/fanout-$name.md"
    done
} >>"$RESULTS"
echo "$TABLE"
log "written to $RESULTS"
