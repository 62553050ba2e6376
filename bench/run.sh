#!/usr/bin/env bash
# bench/run.sh: lunet's first-milestone comparison, in one bounded run.
#
#   bench/run.sh            # about 1.5 minutes once built; see bench/README.md
#
# Rows: line echo (lunet vs raw-echo-server), HTTP hello (lunet vs nginx +
# lua, with wrk), RSS per idle connection (10,000 held). Writes
# bench/results/YYYY-MM-DD.md (table, machine, exact commands) and prints the
# table. A leg whose tool or server is missing is reported as skipped, not
# fatal. Every process started here is stopped on exit.
#
# Knobs (environment), for smoke runs; the milestone figures use the defaults:
#   BENCH_DURATION=5s   measured time of each echo-load and wrk run
#   BENCH_ROUNDS=2      runs per server, alternating; the best one is kept
#   BENCH_HOLD=10000    idle connections for the memory row
#   BENCH_RESULTS=FILE  where to write the results (default bench/results/DATE.md)
#   LUNET_WORKERS=N     pass --workers N to lunet (default: lunet's own default)

set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

DURATION=${BENCH_DURATION:-5s}
ROUNDS=${BENCH_ROUNDS:-2}
HOLD=${BENCH_HOLD:-10000}
DATE=$(date +%F)
RESULTS=${BENCH_RESULTS:-bench/results/$DATE.md}
BIN=target/release
BODY="hello world"
export NO_COLOR=1 # lunet's log lines are parsed below

WORK=$(mktemp -d /tmp/lunet-bench.XXXXXX)
PIDS=()     # every process group started here
COMMANDS=() # what was run, for the results file
NOTES=()    # skips and failures, for the results file

log() { printf '[bench] %s\n' "$*" >&2; }
note() { NOTES+=("$*"); log "$*"; }
record() { # CMD...: remember the command, quoted so it can be pasted back
    local arg line=
    for arg in "$@"; do
        [[ $arg =~ ^[A-Za-z0-9_./:=,@+-]+$ ]] || arg="'${arg//\'/\'\\\'\'}'"
        line+="${line:+ }$arg"
    done
    COMMANDS+=("$line")
}

stop_group() { # PID: SIGTERM the process group, SIGKILL it if still there after 3 s
    local pid=$1 kept=() other
    for other in "${PIDS[@]}"; do [ "$other" = "$pid" ] || kept+=("$other"); done
    PIDS=("${kept[@]}")
    kill -TERM -- "-$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    for _ in $(seq 30); do
        kill -0 -- "-$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_group "$pid"; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# Processes run in their own session (setsid) so that stopping a group stops
# nginx's workers too. In a non-interactive shell the background job is not a
# group leader, so setsid execs in place and $! is the server's own pid.
spawn() { # LOG CMD...: start CMD in the background; sets SPAWNED
    local log=$1
    shift
    setsid "$@" >"$log" 2>&1 &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

start_server() { # NAME LOG CMD...: sets SERVER_PID and ADDR (parsed from "listening on")
    local name=$1 log=$2
    shift 2
    record "$@"
    spawn "$log" "$@"
    SERVER_PID=$SPAWNED
    ADDR=
    for _ in $(seq 100); do
        ADDR=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o -m1 'listening on [0-9.]*:[0-9]*' | awk '{print $3}')
        [ -n "$ADDR" ] && return 0
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID"
            note "$name exited (status $?) before printing 'listening on'; output: $(tail -c 300 "$log" | tr '\n' ' ')"
            stop_group "$SERVER_PID"
            return 1
        fi
        sleep 0.1
    done
    note "$name did not print 'listening on' within 10 s"
    stop_group "$SERVER_PID"
    return 1
}

json_field() { # FILE FIELD: FIELD of the last JSON line in FILE
    python3 - "$1" "$2" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
print(json.loads(lines[-1])[sys.argv[2]] if lines else "")
EOF
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
fmt_int() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
ratio() { python3 -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{a / b:.2f}" if b else "-")' "$1" "$2"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

lunet_cmd() { # SCRIPT: the lunet command line for SCRIPT on a free port
    LUNET_CMD=("$BIN/lunet" serve "$1" listen=127.0.0.1:0)
    [ -n "${LUNET_WORKERS:-}" ] && LUNET_CMD+=(--workers "$LUNET_WORKERS")
    return 0
}

# Idle connections need one fd each; use the hard limit (20,000 here).
ulimit -n "$(ulimit -Hn)" 2>/dev/null

# Runs CMD to completion in the background, so that a signal reaches the trap
# at once rather than after CMD (cargo may wait minutes for the build lock).
run_waiting() { # LOG CMD...
    spawn "$@"
    local pid=$SPAWNED status
    wait "$pid"
    status=$?
    stop_group "$pid"
    return $status
}

# ---------------------------------------------------------------- build
LUNET_OK=1
log "building (cargo build --release -p lunet -p lunet-bench)"
record cargo build --release -p lunet -p lunet-bench
if ! run_waiting "$WORK/build.log" cargo build --release -p lunet -p lunet-bench; then
    LUNET_OK=0
    note "lunet did not build; lunet rows skipped ($(grep -m1 '^error' "$WORK/build.log"))"
    if ! run_waiting "$WORK/build-bench.log" cargo build --release -p lunet-bench; then
        cat "$WORK/build-bench.log" >&2
        log "lunet-bench does not build; nothing to run"
        exit 1
    fi
fi
for script in server-scripts/echo.lua server-scripts/http_hello.lua; do
    [ -f "$script" ] || note "$script is missing; its lunet row is skipped"
done

# ---------------------------------------------------------------- line echo
# Each server is started fresh for each run; runs alternate raw, lunet, raw,
# lunet so that a slow spell on the (shared, virtual) machine hits both.
declare -A ECHO_RATE ECHO_P99 ECHO_ERRORS ECHO_RUNS
run_echo() { # NAME ROUND CMD...
    local name=$1 round=$2
    shift 2
    local out="$WORK/echo-$name-$round"
    start_server "$name" "$out.server" "$@" || return 1
    local load=("$BIN/echo-load" --addr "$ADDR" -c 50 --size 64 -d "$DURATION" --warmup 1s)
    record "${load[@]}"
    "${load[@]}" >"$out.load" 2>&1
    stop_group "$SERVER_PID"
    local rate p99 errors
    rate=$(json_field "$out.load" rate)
    p99=$(json_field "$out.load" p99_us)
    errors=$(json_field "$out.load" errors)
    if [ -z "$rate" ]; then
        note "echo-load against $name failed: $(tail -c 300 "$out.load" | tr '\n' ' ')"
        return 1
    fi
    log "echo $name round $round: $(head -1 "$out.load")"
    ECHO_RUNS[$name]="${ECHO_RUNS[$name]:-}${ECHO_RUNS[$name]:+, }$(fmt_int "$rate")"
    if python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))' "$rate" "${ECHO_RATE[$name]:-0}"; then
        ECHO_RATE[$name]=$rate ECHO_P99[$name]=$p99 ECHO_ERRORS[$name]=$errors
    fi
}

for round in $(seq "$ROUNDS"); do
    run_echo raw "$round" "$BIN/raw-echo-server" --listen 127.0.0.1:0
    if [ "$LUNET_OK" = 1 ] && [ -f server-scripts/echo.lua ]; then
        lunet_cmd server-scripts/echo.lua
        run_echo lunet "$round" "${LUNET_CMD[@]}"
    fi
done

# ---------------------------------------------------------------- HTTP hello
declare -A HTTP_RATE HTTP_P99 HTTP_ERRORS HTTP_RUNS HTTP_BYTES
HTTP_SKIP=

ensure_packages() { # install wrk, nginx and the lua module if missing (Debian)
    local missing=() package
    for package in wrk nginx libnginx-mod-http-lua; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$package")
    done
    [ ${#missing[@]} = 0 ] && return 0
    if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
        HTTP_SKIP="missing ${missing[*]} and cannot apt-get install as $(id -un)"
        return 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1; then
        apt-get update >>"$WORK/apt.log" 2>&1
        if ! apt-get install -y --no-install-recommends "${missing[@]}" >>"$WORK/apt.log" 2>&1; then
            HTTP_SKIP="apt-get install ${missing[*]} failed: $(tail -1 "$WORK/apt.log")"
            return 1
        fi
    fi
}

module_path() { # PACKAGE NAME.so: where the package installed the module
    dpkg -L "$1" 2>/dev/null | grep -m1 "/$2\$"
}

write_nginx_conf() { # DIR PORT LUA: a private nginx prefix serving LUA at /
    local dir=$1 port=$2 lua=$3 ndk lua_module
    ndk=$(module_path libnginx-mod-http-ndk ndk_http_module.so)
    lua_module=$(module_path libnginx-mod-http-lua ngx_http_lua_module.so)
    [ -n "$lua_module" ] || return 1
    mkdir -p "$dir/logs"
    cat >"$dir/nginx.conf" <<EOF
# Written by bench/run.sh: nginx + lua on a private prefix, 2 workers.
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
${ndk:+load_module $ndk;}
load_module $lua_module;

events {
    worker_connections 4096;
}

http {
    access_log off;
    server_tokens off;
    default_type text/plain;
    # lunet keeps a keep-alive connection for as long as the client wants;
    # nginx's default of 1000 requests would make wrk reconnect.
    keepalive_requests 1000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;

    server {
        listen 127.0.0.1:$port;
        location / {
            content_by_lua_block {
                $lua
            }
        }
    }
}
EOF
}

run_wrk() { # NAME ROUND URL
    local name=$1 round=$2 url=$3 out="$WORK/wrk-$1-$2"
    wrk -t2 -c100 -d1s "$url" >/dev/null 2>&1 # warmup, not recorded
    record wrk -t2 -c100 -d"$DURATION" --latency "$url"
    wrk -t2 -c100 -d"$DURATION" --latency "$url" >"$out" 2>&1
    local parsed
    parsed=$(python3 - "$out" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
units = {"us": 1, "ms": 1e3, "s": 1e6}
rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
done = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", text)
errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors += int(bad.group(1)) if bad else 0
scale = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
size = float(done.group(2)) * scale[done.group(3)] / int(done.group(1)) if done else 0
if rate and p99:
    print(rate.group(1), f"{float(p99.group(1)) * units[p99.group(2)]:.1f}", errors, round(size))
EOF
    )
    if [ -z "$parsed" ]; then
        note "wrk against $name failed: $(tail -c 300 "$out" | tr '\n' ' ')"
        return 1
    fi
    local rate p99 errors bytes
    read -r rate p99 errors bytes <<<"$parsed"
    log "http $name round $round: $(fmt_int "$rate") req/s, p99 ${p99} us, $errors errors, ~$bytes B/response"
    HTTP_RUNS[$name]="${HTTP_RUNS[$name]:-}${HTTP_RUNS[$name]:+, }$(fmt_int "$rate")"
    if python3 -c 'import sys; sys.exit(not float(sys.argv[1]) > float(sys.argv[2]))' "$rate" "${HTTP_RATE[$name]:-0}"; then
        HTTP_RATE[$name]=$rate HTTP_P99[$name]=$p99 HTTP_ERRORS[$name]=$errors HTTP_BYTES[$name]=$bytes
    fi
}

check_body() { # URL: prints the response body, empty on failure
    curl -s --max-time 2 "$1"
}

run_http_lunet() { # ROUND
    lunet_cmd server-scripts/http_hello.lua
    start_server lunet-http "$WORK/http-lunet-$1.server" "${LUNET_CMD[@]}" || return 1
    local body
    body=$(check_body "http://$ADDR/"; printf x) # x keeps a trailing newline
    body=${body%x}
    if [ "$body" != "$BODY" ] && [ "$body" != "$BODY"$'\n' ]; then
        note "lunet http_hello answered $(printf '%q' "$body"), not '$BODY'"
    fi
    LUNET_BODY=$body
    run_wrk lunet "$1" "http://$ADDR/"
    stop_group "$SERVER_PID"
}

run_http_nginx() { # ROUND
    local dir="$WORK/nginx" port lua
    port=$(free_port)
    # Same body as lunet's, and Content-Length framing as lunet sends (nginx
    # would use chunked encoding for a lua body of unknown length).
    if [ "${LUNET_BODY:-$BODY}" = "$BODY"$'\n' ]; then
        lua="ngx.header[\"Content-Length\"] = $((${#BODY} + 1)) ngx.say(\"$BODY\")"
    else
        lua="ngx.header[\"Content-Length\"] = ${#BODY} ngx.print(\"$BODY\")"
    fi
    write_nginx_conf "$dir" "$port" "$lua" || {
        HTTP_SKIP="ngx_http_lua_module.so not found (dpkg -L libnginx-mod-http-lua)"
        return 1
    }
    local nginx_cmd=(nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" -g 'daemon off;')
    record "${nginx_cmd[@]}"
    NGINX_CONF=$(cat "$dir/nginx.conf")
    spawn "$WORK/nginx-$1.log" "${nginx_cmd[@]}"
    local pid=$SPAWNED body=
    for _ in $(seq 50); do
        body=$(check_body "http://127.0.0.1:$port/") && [ -n "$body" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$body" ]; then
        note "nginx + lua did not answer: $(tail -c 300 "$dir/logs/error.log" "$WORK/nginx-$1.log" 2>/dev/null | tr '\n' ' ')"
        stop_group "$pid"
        return 1
    fi
    run_wrk nginx "$1" "http://127.0.0.1:$port/"
    stop_group "$pid"
}

if ensure_packages; then
    command -v wrk >/dev/null || HTTP_SKIP="wrk not found"
    command -v nginx >/dev/null || HTTP_SKIP="nginx not found"
fi
if [ -n "$HTTP_SKIP" ]; then
    note "HTTP row skipped: $HTTP_SKIP"
else
    LUNET_HTTP=0
    [ "$LUNET_OK" = 1 ] && [ -f server-scripts/http_hello.lua ] && LUNET_HTTP=1
    for round in $(seq "$ROUNDS"); do
        [ "$LUNET_HTTP" = 1 ] && run_http_lunet "$round"
        run_http_nginx "$round" || [ -z "$HTTP_SKIP" ] || break
    done
fi

# ---------------------------------------------------------------- memory
declare -A MEM_BASE MEM_HELD MEM_UP MEM_PER
measure_memory() { # NAME CMD...: RSS per idle connection, $HOLD connections
    local name=$1
    shift
    local out="$WORK/mem-$name"
    start_server "$name" "$out.server" "$@" || return 1
    local server=$SERVER_PID
    sleep 1 # let startup allocations settle
    local base_rss base_fds
    base_rss=$(rss_kb "$server")
    base_fds=$(fd_count "$server")
    local hold=("$BIN/hold-conns" --addr "$ADDR" -n "$HOLD" --hold 60s)
    record "${hold[@]}"
    spawn "$out.hold" "${hold[@]}"
    local holder=$SPAWNED up=
    for _ in $(seq 300); do
        up=$(awk '/^up / {split($2, a, "/"); print a[1]}' "$out.hold")
        [ -n "$up" ] && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$up" ] || [ "$up" = 0 ]; then
        note "hold-conns against $name failed: $(tail -c 300 "$out.hold" | tr '\n' ' ')"
        stop_group "$holder"
        stop_group "$server"
        return 1
    fi
    # A handshake completes before the server accepts: wait for its fds.
    local fds
    for _ in $(seq 100); do
        fds=$(fd_count "$server")
        [ $((fds - base_fds)) -ge "$up" ] && break
        sleep 0.1
    done
    if [ $((fds - base_fds)) -lt "$up" ]; then
        note "$name holds only $((fds - base_fds)) of $up connected sockets"
    fi
    sleep 1
    local held_rss
    held_rss=$(rss_kb "$server")
    stop_group "$holder"
    stop_group "$server"
    MEM_BASE[$name]=$base_rss MEM_HELD[$name]=$held_rss MEM_UP[$name]=$up
    MEM_PER[$name]=$(python3 -c 'import sys; b, h, n = map(int, sys.argv[1:]); print(f"{(h - b) / n:.2f}")' "$base_rss" "$held_rss" "$up")
    log "memory $name: RSS $base_rss KB -> $held_rss KB with $up idle connections: ${MEM_PER[$name]} KB each"
}

if [ "$LUNET_OK" = 1 ] && [ -f server-scripts/echo.lua ]; then
    lunet_cmd server-scripts/echo.lua
    measure_memory lunet "${LUNET_CMD[@]}"
fi
measure_memory raw "$BIN/raw-echo-server" --listen 127.0.0.1:0

# ---------------------------------------------------------------- report
cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
revision=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff-index --quiet HEAD -- 2>/dev/null || revision="$revision (with uncommitted changes)"

echo_cell() { # NAME
    if [ -n "${ECHO_RATE[$1]:-}" ]; then
        printf '%s rt/s, p99 %s us' "$(fmt_int "${ECHO_RATE[$1]}")" "${ECHO_P99[$1]}"
        [ "${ECHO_ERRORS[$1]}" != 0 ] && printf ', %s errors' "${ECHO_ERRORS[$1]}"
        printf ' (runs: %s)' "${ECHO_RUNS[$1]}"
    else
        printf 'not measured'
    fi
}
http_cell() { # NAME
    if [ -n "${HTTP_RATE[$1]:-}" ]; then
        printf '%s req/s, p99 %s us, %s B/resp' "$(fmt_int "${HTTP_RATE[$1]}")" "${HTTP_P99[$1]}" "${HTTP_BYTES[$1]}"
        [ "${HTTP_ERRORS[$1]}" != 0 ] && printf ', %s errors' "${HTTP_ERRORS[$1]}"
        printf ' (runs: %s)' "${HTTP_RUNS[$1]}"
    elif [ -n "$HTTP_SKIP" ]; then
        printf 'skipped: %s' "$HTTP_SKIP"
    else
        printf 'not measured'
    fi
}
mem_cell() { # NAME
    if [ -n "${MEM_PER[$1]:-}" ]; then
        printf '%s KB/conn (RSS %s -> %s KB, %s conns)' "${MEM_PER[$1]}" \
            "$(fmt_int "${MEM_BASE[$1]}")" "$(fmt_int "${MEM_HELD[$1]}")" "$(fmt_int "${MEM_UP[$1]}")"
    else
        printf 'not measured'
    fi
}
ratio_cell() { # TABLE-NAME LUNET REFERENCE
    local -n table=$1
    if [ -n "${table[$2]:-}" ] && [ -n "${table[$3]:-}" ]; then ratio "${table[$2]}" "${table[$3]}"; else printf -- '-'; fi
}

TABLE=$(
    echo "| benchmark | lunet | reference | reference figure | lunet / reference |"
    echo "| --- | --- | --- | --- | --- |"
    echo "| line echo: echo-load -c 50 --size 64 -d $DURATION, best of $ROUNDS | $(echo_cell lunet) | raw-echo-server (mio, 1 thread) | $(echo_cell raw) | $(ratio_cell ECHO_RATE lunet raw) |"
    echo "| HTTP hello, keep-alive: wrk -t2 -c100 -d$DURATION, best of $ROUNDS | $(http_cell lunet) | nginx + lua, 2 workers | $(http_cell nginx) | $(ratio_cell HTTP_RATE lunet nginx) |"
    echo "| RSS per idle connection, $(fmt_int "$HOLD") held | $(mem_cell lunet) | raw-echo-server | $(mem_cell raw) | - |"
)

mkdir -p "$(dirname "$RESULTS")"
{
    echo "# lunet milestone benchmarks, $DATE"
    echo
    echo "Written by \`bench/run.sh\`; see \`bench/README.md\` for what each row means."
    echo
    echo "$TABLE"
    echo
    echo "Each rate is the best of $ROUNDS run(s) per server, run alternately (A, B, A, B),"
    echo "each against a freshly started server; all runs are listed. p99 is the best run's."
    echo "The load generator runs on the same cores as the server. Nothing is pinned."
    echo
    echo "## Machine"
    echo
    echo "- date: $(date '+%F %T %Z')"
    echo "- nproc: $(nproc)"
    echo "- CPU: $cpu_model"
    echo "- kernel: $(uname -sr)"
    echo "- git: $revision"
    lunet_line=$(sed 's/\x1b\[[0-9;]*m//g' "$WORK"/echo-lunet-1.server 2>/dev/null | grep -m1 -o 'serving .*')
    [ -n "$lunet_line" ] && echo "- lunet: $lunet_line${LUNET_WORKERS:+ (--workers $LUNET_WORKERS)}"
    if [ ${#NOTES[@]} -gt 0 ]; then
        echo
        echo "## Notes"
        echo
        printf -- '- %s\n' "${NOTES[@]}"
    fi
    echo
    echo "## Commands"
    echo
    echo "Servers bind port 0 and print \`listening on ADDR\`; ADDR below is what they printed."
    echo
    echo '```'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
    echo
    echo "hold-conns is stopped once the RSS is read; its --hold only bounds it."
    if [ -n "${NGINX_CONF:-}" ]; then
        echo
        echo "nginx.conf (in a temporary prefix, removed after the run):"
        echo
        echo '```nginx'
        echo "$NGINX_CONF"
        echo '```'
    fi
} >"$RESULTS"

echo
echo "$TABLE"
echo
log "results written to $RESULTS"
