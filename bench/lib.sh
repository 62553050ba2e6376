# bench/lib.sh: what the bench/ scripts share. Sourced, not run:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   bench_init TAG
#
# bench_init cds to the repository, makes the scratch directory WORK and
# sets the traps that stop every process started here (also on Ctrl-C) and
# remove WORK. Then:
#
#   log MESSAGE...           "[TAG] MESSAGE" on stderr
#   note MESSAGE...          log it and keep it in NOTES (for a results file)
#   record CMD...            keep CMD in COMMANDS, quoted to paste back
#   spawn LOG CMD...         start CMD in its own process group, output to
#                            LOG; sets SPAWNED (its pid, also in PIDS)
#   stop_group PID [GRACE]   SIGTERM PID's group, SIGKILL after GRACE s (3)
#   start_server NAME LOG CMD...
#                            record and spawn a server, wait until LOG shows
#                            READY (default "listening on"; lunet's "serving "
#                            comes once every host has loaded the script);
#                            sets SERVER_PID and ADDR ("IP:PORT" parsed from
#                            "listening on"); notes why and returns 1 if not
#   free_port                a free loopback TCP port
#   fmt_int N                N rounded, with thousands separators
#   ratio A B                A / B to 2 decimals, "-" if B is 0 or empty
#   verdict VALUE OP GOAL    met / **missed** (OP >= or <=); "-" if VALUE
#                            is not a number ("1.5x" and "1,234" are)
#   median N...              the middle value (the lower one of two)
#   machine                  "nproc: N; CPU: ...; kernel: ...; git: REV"
#   lunet_binary             sets BIN: LUNET_BIN, or a release build
#   install_debian_packages PACKAGE...   (scripts/debian.sh)
#
# Knobs: LUNET_BIN=PATH (use this lunet), CLEANUP_GRACE=S (seconds each
# group gets when the script exits; run.sh gives its called scripts 10 to
# stop their own servers).

LOG_TAG=${LOG_TAG:-bench}

bench_init() { # TAG
    LOG_TAG=$1
    ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    cd "$ROOT" || exit 1
    export NO_COLOR=1 # lunet's log lines are parsed
    WORK=$(mktemp -d "/tmp/lunet-$LOG_TAG.XXXXXX")
    PIDS=()     # every process group started here
    COMMANDS=() # what was run, for the results file
    NOTES=()    # skips and failures, for the results file
    trap bench_cleanup EXIT
    trap 'log interrupted; exit 130' INT TERM
}

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
note() { NOTES+=("$*"); log "$*"; }

record() {
    local arg line=
    for arg in "$@"; do
        [[ $arg =~ ^[A-Za-z0-9_./:=,@+-]+$ ]] || arg="'${arg//\'/\'\\\'\'}'"
        line+="${line:+ }$arg"
    done
    COMMANDS+=("$line")
}

# In a non-interactive shell the background job is not a group leader, so
# setsid execs in place and $! is the command's own pid.
spawn() {
    local log=$1
    shift
    setsid "$@" >"$log" 2>&1 &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

stop_group() {
    local pid=$1 grace=${2:-3} kept=() other
    for other in "${PIDS[@]}"; do [ "$other" = "$pid" ] || kept+=("$other"); done
    PIDS=("${kept[@]}")
    kill -TERM -- "-$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    for _ in $(seq $((grace * 10))); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_group "$pid" "${CLEANUP_GRACE:-3}"; done
    rm -rf "$WORK"
}

start_server() {
    local name=$1 log=$2 ready=${READY:-listening on}
    shift 2
    record "$@"
    spawn "$log" "$@"
    SERVER_PID=$SPAWNED
    ADDR=
    for _ in $(seq 100); do
        # The log appears once the background shell has opened it.
        if [ -f "$log" ] && sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -q -- "$ready"; then
            ADDR=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o -m1 'listening on [0-9.]*:[0-9]*' | awk '{print $3}')
            [ -n "$ADDR" ] && return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID"
            note "$name exited (status $?) before printing '$ready'; output: $(tail -c 300 "$log" | tr '\n' ' ')"
            stop_group "$SERVER_PID"
            return 1
        fi
        sleep 0.1
    done
    note "$name did not print '$ready' within 10 s; output: $(tail -c 300 "$log" | tr '\n' ' ')"
    stop_group "$SERVER_PID"
    return 1
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
fmt_int() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'; }

verdict() {
    awk -v value="$1" -v op="$2" -v goal="$3" 'BEGIN {
        sub(/x$/, "", value); gsub(/,/, "", value)
        if (value !~ /^[-+]?[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$/) { print "-"; exit }
        ok = (op == ">=") ? (value + 0 >= goal + 0) : (value + 0 <= goal + 0)
        print ok ? "met" : "**missed**"
    }'
}

mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; } # KiB -> MB, one decimal

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

machine() {
    local revision
    revision=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$ROOT" diff-index --quiet HEAD -- 2>/dev/null || revision="$revision (with uncommitted changes)"
    printf 'nproc: %s; CPU: %s; kernel: %s; git: %s\n' "$(nproc)" \
        "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "$(uname -sr)" "$revision"
}

# emit_table TITLE TEXT: prints TEXT (a script's table, machine and
# commands) and, when BENCH_RESULTS names a file, appends it there under
# "## TITLE (DATE)".
emit_table() {
    printf '%s\n' "$2"
    if [ -n "${BENCH_RESULTS:-}" ]; then
        printf '## %s (%s)\n\n%s\n' "$1" "$(date +%F)" "$2" >>"$BENCH_RESULTS"
        log "appended to $BENCH_RESULTS"
    fi
}

# write_results TITLE [NOTE...]: appends to RESULTS a heading TITLE, TABLE,
# the machine and each NOTE as a list item, and the recorded commands;
# prints TABLE.
write_results() {
    local title=$1 line
    shift
    mkdir -p "$(dirname "$RESULTS")"
    {
        echo "# $title"
        echo
        echo "$TABLE"
        echo
        echo "- $(machine)"
        for line in "$@"; do echo "- $line"; done
        echo
        echo '```'
        printf '%s\n' "${COMMANDS[@]}"
        echo '```'
    } >>"$RESULTS"
    echo "$TABLE"
    log "written to $RESULTS"
}

lunet_binary() {
    if [ -n "${LUNET_BIN:-}" ]; then
        BIN=$LUNET_BIN
        return 0
    fi
    log "cargo build --release -p lunet"
    cargo build --release -p lunet >&2 || { log "lunet does not build"; return 1; }
    BIN=target/release/lunet
}

# shellcheck source=scripts/debian.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/debian.sh"
