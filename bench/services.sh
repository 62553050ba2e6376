#!/usr/bin/env bash
# bench/services.sh: the services benchmarks of issues 4 and 13, lunet and
# skynet, in one bounded run (about a minute once built).
#
#   bench/services.sh
#
# Rows, each a script under bench/services/ run with `lunet run`:
#   ping-pong call   pingpong.lua: one pair, one call at a time (1M calls or 2 s)
#   one-way send     send.lua: 2M sends in bursts of 10,000 from one sender,
#                    rate counted at the receiver
#   idle service     idle.lua: VmRSS before/after spawning 10,000 services
#                    that only set a dispatch function
# skynet built here runs the same three (bench/skynet/: Lua services,
# `thread = 2`; lunet runs with its defaults, 2 workers on 2 cores),
# alternating with lunet round by round: SKYNET_DIR (default
# target/skynet) holds the build; if it is missing, skynet is cloned from
# SKYNET_GIT (default github.com/cloudwu/skynet, no submodules) and built
# without jemalloc. If that fails, skynet's figures from research/anchors.md
# stand in and the notes say why. Throughput rows run BENCH_ROUNDS times
# (default 5) and report the median; all runs are listed (on 2 vCPUs the
# ping-pong rate varies between runs with where the two services land, see
# bench/README.md). Prints a markdown table with the goals of issue 13
# (calls >= 4x, sends >= 5x skynet, idle <= 20 KB). BENCH_RESULTS=FILE also
# writes the table there.
#
# Knobs (environment): BENCH_ROUNDS=5, BENCH_CALLS=1000000, BENCH_SECONDS=2,
# BENCH_MESSAGES=2000000, BENCH_IDLE=10000, LUNET_WORKERS=N (--workers N),
# LUNET_BIN=PATH (use this lunet instead of building one), SKYNET_DIR,
# SKYNET_GIT.

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

# skynet built here runs the same three benchmarks (bench/skynet/, Lua
# services, `thread = 2`), alternating with lunet's round by round. If it
# cannot be built, its figures from research/anchors.md (measured on this
# machine kind) stand in, and the table says why.
SKYNET_CALLS=215000
SKYNET_SENDS=420000
SKYNET_IDLE_KB=52
SKYNET_DIR=${SKYNET_DIR:-$ROOT/target/skynet}
SKYNET_GIT=${SKYNET_GIT:-https://github.com/cloudwu/skynet.git}
SKYNET_SKIP=

lunet_binary || exit 1

# skynet_build: a build of skynet in SKYNET_DIR (cloned from SKYNET_GIT if
# missing; no submodules, so no jemalloc); sets SKYNET_SKIP if it cannot.
skynet_build() {
    [ -x "$SKYNET_DIR/skynet" ] && [ -f "$SKYNET_DIR/cservice/snlua.so" ] && return 0
    if [ ! -f "$SKYNET_DIR/Makefile" ]; then
        log "fetching skynet from $SKYNET_GIT into $SKYNET_DIR"
        if ! git clone -q --depth 1 "$SKYNET_GIT" "$SKYNET_DIR" >"$WORK/skynet-clone.log" 2>&1; then
            SKYNET_SKIP="git clone $SKYNET_GIT failed: $(tail -c 200 "$WORK/skynet-clone.log" | tr '\n' ' ')"
            return 1
        fi
    fi
    log "building skynet in $SKYNET_DIR (without jemalloc)"
    if ! make -C "$SKYNET_DIR" linux MALLOC_STATICLIB= SKYNET_DEFINES=-DNOUSE_JEMALLOC >"$WORK/skynet-build.log" 2>&1; then
        SKYNET_SKIP="make in $SKYNET_DIR failed: $(tail -c 200 "$WORK/skynet-build.log" | tr '\n' ' ')"
        return 1
    fi
}
skynet_build || note "skynet skipped, its anchors.md figures stand in: $SKYNET_SKIP"

# skynet_run START KEY=VALUE...: runs bench/skynet/START.lua as skynet's
# start service with those config keys, prints its output.
skynet_run() {
    local start=$1 config="$WORK/skynet-$1.config" pair
    shift
    {
        echo "thread = 2"
        echo "harbor = 0"
        echo "start = \"$start\""
        echo "bootstrap = \"snlua bootstrap\""
        echo "luaservice = \"$SKYNET_DIR/service/?.lua;$ROOT/bench/skynet/?.lua\""
        echo "lualoader = \"$SKYNET_DIR/lualib/loader.lua\""
        echo "lua_path = \"$SKYNET_DIR/lualib/?.lua;$SKYNET_DIR/lualib/?/init.lua\""
        echo "lua_cpath = \"$SKYNET_DIR/luaclib/?.so\""
        echo "cpath = \"$SKYNET_DIR/cservice/?.so\""
        for pair in "$@"; do echo "${pair%%=*} = ${pair#*=}"; done
    } >"$config"
    timeout 120 "$SKYNET_DIR/skynet" "$config"
}

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

# rounds NAME KEY LUNET_SCRIPT SKYNET_START ARGS...: BENCH_ROUNDS rounds,
# lunet then skynet in each; the figures under KEY go to the arrays
# lunet_NAME and skynet_NAME.
rounds() {
    local name=$1 key=$2 script=$3 start=$4 round out
    shift 4
    record_run "$script" "$@"
    [ -z "$SKYNET_SKIP" ] && record "$SKYNET_DIR/skynet" "CONFIG(start=$start $*)"
    for round in $(seq "$ROUNDS"); do
        log "$name, round $round"
        out=$(run "$script" "$@") || { log "$script failed"; exit 1; }
        eval "lunet_$name+=(\"\$(value $key \"\$out\")\")"
        [ -n "$SKYNET_SKIP" ] && continue
        out=$(skynet_run "$start" "$@") || { log "skynet $start failed"; exit 1; }
        eval "skynet_$name+=(\"\$(value $key \"\$out\")\")"
    done
}

lunet_calls=() skynet_calls=() lunet_sends=() skynet_sends=()
rounds calls calls_per_s bench/services/pingpong.lua pingpong "calls=$CALLS" "seconds=$SECONDS_CAP"
rounds sends sends_per_s bench/services/send.lua send "messages=$MESSAGES"

log "idle services: $IDLE"
record_run bench/services/idle.lua "count=$IDLE"
out=$(run bench/services/idle.lua "count=$IDLE") || { log "idle.lua failed"; exit 1; }
idle_kb=$(value kb_per_service "$out")
idle_lua_kb=$(value lua_kb_per_service "$out")

calls=$(median "${lunet_calls[@]}")
sends=$(median "${lunet_sends[@]}")
if [ -z "$SKYNET_SKIP" ]; then
    record "$SKYNET_DIR/skynet" "CONFIG(start=idle count=$IDLE)"
    out=$(skynet_run idle "count=$IDLE") || { log "skynet idle failed"; exit 1; }
    SKYNET_IDLE_KB=$(value kb_per_service "$out")
    skynet_idle_lua_kb=$(value lua_kb_per_service "$out")
    SKYNET_CALLS=$(median "${skynet_calls[@]}")
    SKYNET_SENDS=$(median "${skynet_sends[@]}")
    reference="skynet built here (median)"
else
    reference="skynet (anchors.md; not built here: see notes)"
fi

thousands() { awk -v n="$1" 'BEGIN { printf "%.0fk", n / 1000 }'; }

table=$(
    # runs LIST...: "(runs: 1k 2k ...)", or nothing for an empty list.
    runs() { [ $# -gt 0 ] && printf ' (runs: %s)' "$(for r in "$@"; do printf '%s ' "$(thousands "$r")"; done | sed 's/ $//')"; }
    skynet_idle="$SKYNET_IDLE_KB KB${skynet_idle_lua_kb:+ (Lua heap $skynet_idle_lua_kb KB)}"
    cat <<EOF
| row | lunet (median) | $reference | lunet / skynet | goal | verdict |
| --- | --- | --- | --- | --- | --- |
| ping-pong \`call\`, one pair | $(thousands "$calls") calls/s$(runs "${lunet_calls[@]}") | $(thousands "$SKYNET_CALLS") calls/s$(runs "${skynet_calls[@]}") | $(ratio "$calls" "$SKYNET_CALLS")x | >= 4x | $(verdict "$(ratio "$calls" "$SKYNET_CALLS")" ">=" 4) |
| one-way \`send\`, one sender | $(thousands "$sends") msgs/s$(runs "${lunet_sends[@]}") | $(thousands "$SKYNET_SENDS") msgs/s$(runs "${skynet_sends[@]}") | $(ratio "$sends" "$SKYNET_SENDS")x | >= 5x | $(verdict "$(ratio "$sends" "$SKYNET_SENDS")" ">=" 5) |
| idle service, RSS each ($IDLE spawned) | $idle_kb KB (Lua heap $idle_lua_kb KB) | $skynet_idle | $(ratio "$idle_kb" "$SKYNET_IDLE_KB")x | <= 20 KB | $(verdict "$idle_kb" "<=" 20) |

Machine: $(machine).

Commands:
$(for c in "${COMMANDS[@]}"; do printf -- '- `%s`\n' "$c"; done)
EOF
)

emit_table "Services" "$table"
