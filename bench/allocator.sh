#!/usr/bin/env bash
# bench/allocator.sh: the global allocator of lunet, three ways, on the
# rows its choice moves (issue 13; about 5 minutes once built):
#
#   glibc     glibc's malloc as lunet sets it up (src/allocator.rs: blocks
#             of 128 KiB and more always mapped on their own)
#   stock     glibc's malloc as it comes (its mmap threshold rises as large
#             blocks are freed): the same binary with GLIBC_TUNABLES set,
#             which makes lunet leave malloc alone
#   mimalloc  lunet built with `--features mimalloc`
#
# on:
#
#   1. the RESP hostile run (bench/resp-hostile.sh): peak RSS, and RSS
#      after FLUSHALL once the clients have left;
#   2. the fan-out to a subscriber that never reads (bench/fanout.sh);
#   3. line echo, echo-load -c 50 --size 64 against echo.lua; HTTP, wrk
#      -t2 -c100 against http_hello.lua; large values, redis-benchmark -c 10
#      -d 262144 -t set,get against kv.lua: ROUNDS runs of each, the three
#      in turn (rotating who goes first), a fresh server per run; the median.
#
#   bench/allocator.sh
#
# Prints a markdown table; writes it, every run, the machine and the
# commands to BENCH_RESULTS (default bench/results/allocator-YYYY-MM-DD.md).
#
# Knobs (environment):
#   ALLOC_BENCH_ROUNDS=4        throughput runs per build and test
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
VARIANTS=(glibc stock mimalloc)
declare -A BINS=([glibc]=$GLIBC_BIN [stock]=$GLIBC_BIN [mimalloc]=$MIMALLOC_BIN)
# What each variant's server runs under (`env` arguments).
declare -A ENVS=([glibc]="" [stock]="GLIBC_TUNABLES=glibc.malloc.perturb=0" [mimalloc]="")
command -v wrk >/dev/null 2>&1 || install_debian_packages wrk || exit 1
command -v redis-benchmark >/dev/null 2>&1 || install_debian_packages redis-tools || exit 1

# --- memory rows -------------------------------------------------------------
ROWS=()        # the table: benchmark | lunet | reference | ... (7 columns)
FANOUT_ROWS=() # bench/fanout.sh's rows (4 columns), one per build
for name in "${VARIANTS[@]}"; do
    env ${ENVS[$name]} LUNET_BIN=${BINS[$name]} LUNET_LABEL="kv.lua ($name)" BENCH_RESULTS="$WORK/hostile-$name.md" \
        bash bench/resp-hostile.sh >"$WORK/hostile-$name.out" || { log "resp-hostile.sh failed ($name)"; exit 1; }
    while IFS= read -r line; do ROWS+=("$line"); done < <(grep -e '^| RESP' -e '^| RSS' "$WORK/hostile-$name.out")
    env ${ENVS[$name]} LUNET_BIN=${BINS[$name]} BENCH_RESULTS="$WORK/fanout-$name.md" \
        bash bench/fanout.sh >"$WORK/fanout-$name.out" || { log "fanout.sh failed ($name)"; exit 1; }
    FANOUT_ROWS+=("$(grep '^| one subscriber' "$WORK/fanout-$name.out" | sed "s/^| one subscriber/| $name: one subscriber/")")
done

# --- throughput, alternating -------------------------------------------------
declare -A RUNS
keep() { RUNS[$1]="${RUNS[$1]:-} $2"; }
serve() { # VARIANT SCRIPT: sets SERVER_PID and ADDR
    # shellcheck disable=SC2086
    READY='serving ' start_server "$2" "$WORK/server.log" env ${ENVS[$1]} "${BINS[$1]}" serve "$2" listen=127.0.0.1:0
}
for round in $(seq "$ROUNDS"); do
    order=("${VARIANTS[@]:$(((round - 1) % 3))}" "${VARIANTS[@]:0:$(((round - 1) % 3))}")
    for name in "${order[@]}"; do
        serve "$name" server-scripts/echo.lua || exit 1
        load=(target/release/echo-load --addr "$ADDR" -c 50 --size 64 -d "$DURATION" --warmup 1s)
        [ "$round" = 1 ] && record "${load[@]}"
        rate=$("${load[@]}" 2>/dev/null | grep '^{' | tail -1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["rate"])')
        stop_group "$SERVER_PID"
        keep "echo:$name" "$rate"
        serve "$name" server-scripts/http_hello.lua || exit 1
        load=(wrk -t2 -c100 -d "$DURATION" "http://$ADDR/")
        [ "$round" = 1 ] && record "${load[@]}"
        rate=$("${load[@]}" 2>/dev/null | awk '/^Requests\/sec/ {print $2}')
        stop_group "$SERVER_PID"
        keep "http:$name" "$rate"
        serve "$name" server-scripts/kv.lua || exit 1
        load=(redis-benchmark -h 127.0.0.1 -p "${ADDR##*:}" -c 10 -n 2000 -d 262144 -t set,get -q --csv)
        [ "$round" = 1 ] && record "${load[@]}"
        rate=$("${load[@]}" 2>/dev/null | tr -d '"' | awk -F, '$1 == "SET" || $1 == "GET" { sum += $2 } END { print sum / 2 }')
        stop_group "$SERVER_PID"
        keep "big:$name" "$rate"
        log "round $round, $name: echo ${RUNS[echo:$name]##* } rt/s, http ${RUNS[http:$name]##* } req/s, 256 KiB values ${RUNS[big:$name]##* } ops/s"
    done
done
for test in echo http big; do
    case $test in
    echo) what="line echo, echo-load -c 50 --size 64, rt/s" ;;
    http) what="HTTP hello, wrk -t2 -c100, req/s" ;;
    big) what="kv.lua, 256 KiB values, redis-benchmark -c 10 -d 262144 -t set,get, mean of SET and GET ops/s" ;;
    esac
    # shellcheck disable=SC2086
    stock=$(median ${RUNS[$test:stock]})
    for name in glibc mimalloc; do
        # shellcheck disable=SC2086
        value=$(median ${RUNS[$test:$name]})
        ROWS+=("| $what, median of $ROUNDS | $name $(fmt_int "$value") (runs:${RUNS[$test:$name]}) | stock glibc | $(fmt_int "$stock") (runs:${RUNS[$test:stock]}) | $(ratio "$value" "$stock") | ≥ 0.97x | $(verdict "$(ratio "$value" "$stock")" ">=" 0.97) |")
    done
done

TABLE=$(
    echo "| benchmark | lunet | reference | reference figure | lunet / reference | goal | verdict |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "| benchmark | lunet | goal | verdict |"
    echo "| --- | --- | --- | --- |"
    printf '%s\n' "${FANOUT_ROWS[@]}"
)
mkdir -p "$(dirname "$RESULTS")"
{
    echo "# lunet: glibc malloc vs mimalloc, $DATE"
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
        echo "### $name"
        echo
        sed -e '/./,$!d' -e 's/^# \(.*\)/**\1**/' "$WORK/hostile-$name.md" "$WORK/fanout-$name.md"
    done
} >>"$RESULTS"
echo "$TABLE"
log "written to $RESULTS"
