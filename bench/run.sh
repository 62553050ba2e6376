#!/usr/bin/env bash
# bench/run.sh: lunet's whole comparison table, in one bounded run.
#
#   bench/run.sh                   # every leg, about 4 minutes once built
#   bench/run.sh echo http         # a subset (legs below)
#   BENCH_SMOKE=1 bench/run.sh     # every leg, short, about 1 minute
#
# Legs (default: all, in this order):
#   echo       line echo: lunet vs raw-echo-server (mio), echo-load -c 50
#   http       HTTP hello: lunet vs nginx + lua, wrk -t2 -c100
#   https      HTTPS hello, keep-alive: lunet vs nginx + lua with TLS, wrk -t2 -c100
#   reload     HTTP hello under wrk -t2 -c100 with a SIGHUP halfway: errors
#   mem        RSS per idle connection, 10,000 held (hold-conns)
#   scale      RSS per idle connection, 19,000 held by `lunet load --hold`
#   connector  `lunet load` vs wrk and vs echo-load, on one server each
#   resp       kv.lua vs redis-server (bench/resp.sh)
#   services   ping-pong calls, sends, idle service vs skynet (bench/services.sh)
#   model      Sub call vs plain call, spawn with a module, memory per runtime,
#              event deliveries (bench/model.sh)
#   cluster    cross-node lunet.call and sends through nats-server vs a raw
#              Rust NATS client, node death to nodedown (bench/cluster.sh)
#   lane       head-of-line ratio, SQLite inserts/s (bench/lane.sh)
#   json       lunet.json encode/decode vs lua-cjson (cargo bench --bench json)
#   todo       server-scripts/todo.lua: GET /todos/:id and POST /todos with lunet load
#   procs      95,000 idle connections on lunet serve --processes 5 (bench/procs.sh)
#   fanout     a subscriber that never reads, 50,000 x 1 KB fanned out (bench/fanout.sh)
#   resp-hostile  big values, slow reader, RST mid-write: kv.lua vs redis-server RSS (bench/resp-hostile.sh)
#
# Writes bench/results/YYYY-MM-DD.md (a subset run: YYYY-MM-DD-LEG-LEG.md;
# a smoke run: /tmp/lunet-bench-smoke.md) with the table, each row's goal
# from the issues and met/missed, the machine, notes on anything skipped, the
# exact commands and the called scripts' own detail; prints the table. A leg
# whose tool, script or server is missing is reported as skipped, not fatal.
# Every process started here is stopped on exit, also on Ctrl-C.
#
# Knobs (environment), for smoke runs; the published figures use the defaults:
#   BENCH_SMOKE=1           short defaults for every knob below (each can still be set)
#   BENCH_DURATION=5s       measured time of each echo-load, wrk and lunet load run
#   BENCH_ROUNDS=2          runs per side, alternating; the best one is kept
#   BENCH_HOLD=10000        idle connections for the mem leg
#   BENCH_SCALE_HOLD=19000  idle connections for the scale leg
#   BENCH_SCALE_DURATION=5s how long lunet load --hold holds them
#   BENCH_RESULTS=FILE      where to write the results
#   LUNET_WORKERS=N         pass --workers N to lunet
#   SERVICES_ROUNDS=5       bench/services.sh rounds (its BENCH_ROUNDS)
#   BENCH_CALLS, BENCH_SECONDS, BENCH_MESSAGES, BENCH_IDLE: passed to services.sh
#   MODEL_ROUNDS=5          bench/model.sh rounds (its BENCH_ROUNDS)
#   MODEL_SPAWNS, MODEL_RUNTIMES, MODEL_ATTACHED, MODEL_FIRES: passed to model.sh
#   CLUSTER_ROUNDS=3        bench/cluster.sh rounds (its BENCH_ROUNDS)
#   CLUSTER_CALLS, CLUSTER_SENDS: passed to cluster.sh
#   RESP_BENCH_REQUESTS, RESP_BENCH_CLIENTS, RESP_BENCH_ROUNDS: passed to resp.sh
#   LANE_BENCH_DURATION=6, LANE_BENCH_ROUNDS=3, LANE_BENCH_RATE: passed to lane.sh

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_LEGS=(echo http https reload mem scale connector resp services model cluster lane json todo procs fanout resp-hostile)
usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}
LEGS=()
for arg in "$@"; do
    case $arg in
    -h | --help) usage; exit 0 ;;
    all) LEGS+=("${ALL_LEGS[@]}") ;;
    memory | rss) LEGS+=(mem) ;;
    load) LEGS+=(connector) ;;
    echo | http | https | reload | mem | scale | connector | resp | services | model | cluster | lane | json | todo | procs | fanout | resp-hostile) LEGS+=("$arg") ;;
    *) printf 'bench/run.sh: unknown leg %q (legs: %s, all)\n' "$arg" "${ALL_LEGS[*]}" >&2; exit 2 ;;
    esac
done
SUBSET=
if [ ${#LEGS[@]} = 0 ]; then
    LEGS=("${ALL_LEGS[@]}")
else
    # Run in the canonical order, once each.
    picked=()
    for leg in "${ALL_LEGS[@]}"; do
        [[ " ${LEGS[*]} " == *" $leg "* ]] && picked+=("$leg")
    done
    [ "${picked[*]}" = "${ALL_LEGS[*]}" ] || SUBSET=$(IFS=-; echo "${picked[*]}")
    LEGS=("${picked[@]}")
fi
want() { [[ " ${LEGS[*]} " == *" $1 "* ]]; }

bench_init bench
# The called scripts get time to stop their own servers.
CLEANUP_GRACE=10

SMOKE=${BENCH_SMOKE:-0}
[ "$SMOKE" = 0 ] && SMOKE=
smoke_default() { # VAR SMOKE-VALUE FULL-VALUE: set VAR unless already set
    [ -n "${!1:-}" ] && return 0
    if [ -n "$SMOKE" ]; then printf -v "$1" '%s' "$2"; else printf -v "$1" '%s' "$3"; fi
    export "${1?}"
}
smoke_default BENCH_DURATION 1s 5s
smoke_default BENCH_ROUNDS 1 2
smoke_default BENCH_HOLD 1000 10000
smoke_default BENCH_SCALE_HOLD 2000 19000
smoke_default BENCH_SCALE_DURATION 3s 5s
smoke_default SERVICES_ROUNDS 1 5
smoke_default BENCH_CALLS 100000 1000000
smoke_default BENCH_MESSAGES 200000 2000000
smoke_default BENCH_IDLE 1000 10000
smoke_default MODEL_ROUNDS 1 5
smoke_default MODEL_SPAWNS 500 5000
smoke_default MODEL_RUNTIMES 500 5000
smoke_default MODEL_ATTACHED 1000 1000
smoke_default MODEL_FIRES 20 200
smoke_default CLUSTER_ROUNDS 1 3
smoke_default CLUSTER_CALLS 5000 20000
smoke_default CLUSTER_SENDS 50000 200000
smoke_default RESP_BENCH_REQUESTS 20000 200000
smoke_default RESP_BENCH_ROUNDS 1 3
smoke_default LANE_BENCH_DURATION 2 6
smoke_default LANE_BENCH_ROUNDS 1 3

DURATION=$BENCH_DURATION
ROUNDS=$BENCH_ROUNDS
HOLD=$BENCH_HOLD
SCALE_HOLD=$BENCH_SCALE_HOLD
SCALE_DURATION=$BENCH_SCALE_DURATION
SCALE_SOURCE=127.0.0.1-127.0.0.4
DATE=$(date +%F)
if [ -n "${BENCH_RESULTS:-}" ]; then
    RESULTS=$BENCH_RESULTS
elif [ -n "$SMOKE" ]; then
    RESULTS=/tmp/lunet-bench-smoke.md
else
    RESULTS=bench/results/$DATE${SUBSET:+-$SUBSET}.md
fi
BIN=target/release
BODY="hello world"

# Bounds on the called scripts (seconds); each is far above its usual time.
LIMIT_RESP=300
LIMIT_SERVICES=360
LIMIT_MODEL=300
LIMIT_CLUSTER=300
LIMIT_LANE=240
LIMIT_PROCS=180
LIMIT_FANOUT=120
LIMIT_HOSTILE=300

ROWS=()     # the table's rows, in order
DETAIL=()   # files whose text goes in the results file's appendix: "TITLE|FILE"
STARTED=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

json_field() { # FILE FIELD: FIELD of the last JSON line in FILE
    python3 - "$1" "$2" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
print(json.loads(lines[-1])[sys.argv[2]] if lines else "")
EOF
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
greater() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }
row() { # BENCHMARK LUNET REFERENCE REFERENCE-FIGURE RATIO GOAL VERDICT
    local cells=("$@") line="|" cell
    for cell in "${cells[@]}"; do line+=" ${cell//|/\\|} |"; done
    ROWS+=("$line")
}

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

# run_script OUT ERR LIMIT CMD...: runs a called script in its own process
# group, stdout to OUT, stderr to ERR and to ours (its progress lines); stops
# it (its trap then stops its servers) after LIMIT seconds. Returns its status
# (124 when stopped for time).
run_script() {
    local out=$1 err=$2 limit=$3
    shift 3
    setsid "$@" >"$out" 2> >(tee "$err" >&2) &
    local pid=$! status deadline=$((SECONDS + limit))
    PIDS+=("$pid")
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            note "$* took longer than $limit s; stopped"
            stop_group "$pid" 10
            return 124
        fi
        sleep 0.5
    done
    wait "$pid"
    status=$?
    stop_group "$pid"
    return $status
}

# called_leg NAME LIMIT DETAIL DISPLAY CMD...: runs bench/NAME.sh as CMD
# (run_script, under LIMIT) into $WORK/NAME.out, records DISPLAY among the
# commands and DETAIL (the file with its own detail) for the appendix;
# sets `skip` to why it failed ('' when it ran).
called_leg() {
    local name=$1 limit=$2 detail=$3 display=$4
    shift 4
    COMMANDS+=("$display   # its commands: see the appendix")
    if run_script "$WORK/$name.out" "$WORK/$name.err" "$limit" "$@"; then
        DETAIL+=("bench/$name.sh|$detail")
    else
        skip="bench/$name.sh failed (status $?): $(grep -v '^\s*$' "$WORK/$name.err" | tail -3 | tr '\n' ' ' | tail -c 300)"
    fi
}

# The best run of each side: every run is listed, the fastest is kept.
declare -A RATE P99 ERRS RUNS BYTES SKIP
keep() { # KEY RATE P99-US ERRORS [BYTES-PER-RESPONSE]
    RUNS[$1]="${RUNS[$1]:-}${RUNS[$1]:+, }$(fmt_int "$2")"
    if greater "$2" "${RATE[$1]:-0}"; then
        RATE[$1]=$2 P99[$1]=$3 ERRS[$1]=$4 BYTES[$1]=${5:-}
    fi
}
rate_cell() { # KEY UNIT
    if [ -n "${RATE[$1]:-}" ]; then
        printf '%s %s, p99 %s us' "$(fmt_int "${RATE[$1]}")" "$2" "${P99[$1]}"
        [ -n "${BYTES[$1]}" ] && printf ', %s B/resp' "${BYTES[$1]}"
        [ "${ERRS[$1]}" != 0 ] && printf ', %s errors' "${ERRS[$1]}"
        printf ' (runs: %s)' "${RUNS[$1]}"
    elif [ -n "${SKIP[$1]:-}" ]; then
        printf 'skipped: %s' "${SKIP[$1]}"
    else
        printf 'not measured'
    fi
}
rate_ratio() { # KEY REFERENCE-KEY
    if [ -n "${RATE[$1]:-}" ] && [ -n "${RATE[$2]:-}" ]; then ratio "${RATE[$1]}" "${RATE[$2]}"; else printf -- '-'; fi
}
rate_row() { # LABEL KEY UNIT REFERENCE REFERENCE-KEY GOAL-RATIO
    local r
    r=$(rate_ratio "$2" "$5")
    row "$1" "$(rate_cell "$2" "$3")" "$4" "$(rate_cell "$5" "$3")" "$r" "≥ $6x" "$(verdict "$r" ">=" "$6")"
}

# ---------------------------------------------------------------- build
LUNET_OK=1
log "legs: ${LEGS[*]}; results: $RESULTS"
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
lunet_has() { # SCRIPT: lunet built and SCRIPT present (noted once when missing)
    [ "$LUNET_OK" = 1 ] || return 1
    [ -f "$1" ] && return 0
    [[ " ${MISSING_NOTED:-} " == *" $1 "* ]] || note "$1 is missing; its lunet rows are skipped"
    MISSING_NOTED="${MISSING_NOTED:-} $1"
    return 1
}

# ---------------------------------------------------------------- line echo
echo_load() { # KEY ROUND ADDR: one echo-load run, kept under KEY
    local key=$1 out="$WORK/echo-load-${1//:/-}-$2"
    local load=("$BIN/echo-load" --addr "$3" -c 50 --size 64 -d "$DURATION" --warmup 1s)
    record "${load[@]}"
    "${load[@]}" >"$out" 2>&1
    local rate
    rate=$(json_field "$out" rate)
    if [ -z "$rate" ]; then
        note "echo-load ($key) failed: $(tail -c 300 "$out" | tr '\n' ' ')"
        return 1
    fi
    log "$key round $2: $(head -1 "$out")"
    keep "$key" "$rate" "$(json_field "$out" p99_us)" "$(json_field "$out" errors)"
}

lunet_load() { # KEY ROUND ADDR ARGS...: one `lunet load ARGS` run, kept under KEY
    local key=$1 round=$2 addr=$3 out="$WORK/lunet-load-${1//:/-}-$2"
    shift 3
    local load=("$BIN/lunet" load "$@" -d "$DURATION" --warmup 1s -q --json "$out.json" "$addr")
    record "${load[@]}"
    "${load[@]}" >"$out" 2>&1
    local parsed
    parsed=$(python3 - "$out.json" <<'EOF' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1]))
bad = sum(n for status, n in d.get("statuses", {}).items() if not status.startswith("2"))
if d["requests"]:
    print(d["requests_per_s"], f'{d["latency_us"]["p99"]:.1f}', d["errors"]["total"] + bad)
EOF
    )
    if [ -z "$parsed" ]; then
        note "lunet load ($key) failed: $(tail -c 300 "$out" | tr '\n' ' ')"
        return 1
    fi
    local rate p99 errors
    read -r rate p99 errors <<<"$parsed"
    log "$key round $round: $(fmt_int "$rate") req/s, p99 $p99 us, $errors errors"
    keep "$key" "$rate" "$p99" "$errors"
}

run_echo() { # KEY ROUND CMD...: a fresh server, one echo-load run
    local key=$1 round=$2
    shift 2
    start_server "$key" "$WORK/server-${key//:/-}-$round" "$@" || return 1
    echo_load "$key" "$round" "$ADDR"
    stop_group "$SERVER_PID"
}

if want echo; then
    log "leg echo"
    # Runs alternate raw, lunet, raw, lunet so that a slow spell on the
    # (shared, virtual) machine hits both.
    for round in $(seq "$ROUNDS"); do
        run_echo echo:raw "$round" "$BIN/raw-echo-server" --listen 127.0.0.1:0
        if lunet_has server-scripts/echo.lua; then
            lunet_cmd server-scripts/echo.lua
            run_echo echo:lunet "$round" "${LUNET_CMD[@]}"
        fi
    done
    rate_row "line echo: echo-load -c 50 --size 64 -d $DURATION, best of $ROUNDS" \
        echo:lunet "rt/s" "raw-echo-server (mio, 1 thread)" echo:raw 0.9
fi

# ---------------------------------------------------------------- HTTP hello
HTTP_SKIP=
PACKAGES_CHECKED=

ensure_packages() { # install wrk, nginx and the lua module if missing (Debian)
    [ -n "$PACKAGES_CHECKED" ] && { [ -z "$HTTP_SKIP" ]; return; }
    PACKAGES_CHECKED=1
    install_debian_packages wrk nginx libnginx-mod-http-lua || HTTP_SKIP=$INSTALL_ERROR
    [ -n "$HTTP_SKIP" ] && return 1
    command -v wrk >/dev/null || HTTP_SKIP="wrk not found"
    command -v nginx >/dev/null || HTTP_SKIP="nginx not found"
    [ -z "$HTTP_SKIP" ]
}

module_path() { # PACKAGE NAME.so: where the package installed the module
    dpkg -L "$1" 2>/dev/null | grep -m1 "/$2\$"
}

write_nginx_conf() { # DIR PORT LUA [CERT KEY]: a private nginx prefix serving LUA at /, with TLS given CERT and KEY
    local dir=$1 port=$2 lua=$3 cert=${4:-} key=${5:-} ndk lua_module
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
        listen 127.0.0.1:$port${cert:+ ssl};
        ${cert:+ssl_certificate $cert;}
        ${key:+ssl_certificate_key $key;}
        location / {
            content_by_lua_block {
                $lua
            }
        }
    }
}
EOF
}

wrk_figures() { # FILE: "REQ/S P99-US ERRORS BYTES-PER-RESPONSE REQUESTS" from wrk's output, or nothing
    python3 - "$1" <<'EOF'
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
requests = int(done.group(1)) if done else 0
if rate and p99:
    print(rate.group(1), f"{float(p99.group(1)) * units[p99.group(2)]:.1f}", errors, round(size), requests)
EOF
}

run_wrk() { # KEY ROUND URL: a 1 s warmup, then one measured wrk run, kept under KEY
    local key=$1 round=$2 url=$3 out="$WORK/wrk-${1//:/-}-$2"
    wrk -t2 -c100 -d1s "$url" >/dev/null 2>&1 # warmup, not recorded
    record wrk -t2 -c100 -d"$DURATION" --latency "$url"
    wrk -t2 -c100 -d"$DURATION" --latency "$url" >"$out" 2>&1
    local parsed
    parsed=$(wrk_figures "$out")
    if [ -z "$parsed" ]; then
        note "wrk ($key) failed: $(tail -c 300 "$out" | tr '\n' ' ')"
        return 1
    fi
    local rate p99 errors bytes
    read -r rate p99 errors bytes _ <<<"$parsed"
    log "$key round $round: $(fmt_int "$rate") req/s, p99 ${p99} us, $errors errors, ~$bytes B/response"
    keep "$key" "$rate" "$p99" "$errors" "$bytes"
}

check_body() { # URL: prints the response body, empty on failure (certificates unchecked: ours is self-signed)
    curl -s --insecure --max-time 2 "$1"
}

# The https leg's certificate, for lunet and nginx alike: self-signed,
# ECDSA P-256 (what a site would use), for 127.0.0.1.
TLS_CERT=$WORK/tls-cert.pem
TLS_KEY=$WORK/tls-key.pem
make_certificate() {
    [ -s "$TLS_CERT" ] && return 0
    record openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$TLS_KEY" -out "$TLS_CERT" -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$TLS_KEY" -out "$TLS_CERT" -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 >"$WORK/openssl.log" 2>&1
}

start_http_lunet() { # LOG [SCHEME]: a fresh http_hello.lua (https: with the certificate); checks its body; sets SERVER_PID, ADDR, LUNET_BODY
    local scheme=${2:-http}
    lunet_cmd server-scripts/http_hello.lua
    [ "$scheme" = https ] && LUNET_CMD+=("tls_cert=$TLS_CERT" "tls_key=$TLS_KEY")
    start_server "lunet-$scheme" "$1" "${LUNET_CMD[@]}" || return 1
    local body
    body=$(check_body "$scheme://$ADDR/"; printf x) # x keeps a trailing newline
    body=${body%x}
    if [ "$body" != "$BODY" ] && [ "$body" != "$BODY"$'\n' ]; then
        note "lunet http_hello answered $(printf '%q' "$body"), not '$BODY'"
    fi
    LUNET_BODY=$body
}

run_http_lunet() { # SCHEME ROUND
    start_http_lunet "$WORK/server-$1-lunet-$2" "$1" || return 1
    run_wrk "$1:lunet" "$2" "$1://$ADDR/"
    stop_group "$SERVER_PID"
}

run_http_nginx() { # SCHEME ROUND: nginx + lua, with TLS (the same certificate as lunet's) for https
    local scheme=$1 dir="$WORK/nginx-$1" port lua tls=()
    shift
    [ "$scheme" = https ] && tls=("$TLS_CERT" "$TLS_KEY")
    port=$(free_port)
    # Same body as lunet's, and Content-Length framing as lunet sends (nginx
    # would use chunked encoding for a lua body of unknown length).
    if [ "${LUNET_BODY:-$BODY}" = "$BODY"$'\n' ]; then
        lua="ngx.header[\"Content-Length\"] = $((${#BODY} + 1)) ngx.say(\"$BODY\")"
    else
        lua="ngx.header[\"Content-Length\"] = ${#BODY} ngx.print(\"$BODY\")"
    fi
    write_nginx_conf "$dir" "$port" "$lua" "${tls[@]}" || {
        HTTP_SKIP="ngx_http_lua_module.so not found (dpkg -L libnginx-mod-http-lua)"
        return 1
    }
    local nginx_cmd=(nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" -g 'daemon off;')
    record "${nginx_cmd[@]}"
    if [ "$scheme" = https ]; then NGINX_TLS_CONF=$(cat "$dir/nginx.conf"); else NGINX_CONF=$(cat "$dir/nginx.conf"); fi
    spawn "$WORK/nginx-$scheme-$1.log" "${nginx_cmd[@]}"
    local pid=$SPAWNED body=
    for _ in $(seq 50); do
        body=$(check_body "$scheme://127.0.0.1:$port/") && [ -n "$body" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$body" ]; then
        note "nginx + lua ($scheme) did not answer: $(tail -c 300 "$dir/logs/error.log" "$WORK/nginx-$scheme-$1.log" 2>/dev/null | tr '\n' ' ')"
        stop_group "$pid"
        return 1
    fi
    run_wrk "$scheme:nginx" "$1" "$scheme://127.0.0.1:$port/"
    stop_group "$pid"
}

run_http_leg() { # SCHEME: lunet and nginx + lua in turn, every round, kept under SCHEME:lunet and SCHEME:nginx
    local scheme=$1 with_lunet=0 round
    if ! ensure_packages; then
        note "$scheme row skipped: $HTTP_SKIP"
        SKIP[$scheme:lunet]=$HTTP_SKIP SKIP[$scheme:nginx]=$HTTP_SKIP
        return
    fi
    lunet_has server-scripts/http_hello.lua && with_lunet=1
    for round in $(seq "$ROUNDS"); do
        [ "$with_lunet" = 1 ] && run_http_lunet "$scheme" "$round"
        run_http_nginx "$scheme" "$round" || [ -z "$HTTP_SKIP" ] || break
    done
    [ -z "$HTTP_SKIP" ] || SKIP[$scheme:nginx]=$HTTP_SKIP
}

if want http; then
    log "leg http"
    run_http_leg http
    rate_row "HTTP hello, keep-alive: wrk -t2 -c100 -d$DURATION, best of $ROUNDS" \
        http:lunet "req/s" "nginx + lua, 2 workers" http:nginx 1.1
fi

# ---------------------------------------------------------------- HTTPS hello
# The http leg over TLS: one self-signed certificate for both, keep-alive
# (wrk reuses its 100 connections, so the handshakes are a small part).
if want https; then
    log "leg https"
    if make_certificate; then
        run_http_leg https
    else
        note "https row skipped: openssl could not make a certificate: $(tail -c 300 "$WORK/openssl.log" | tr '\n' ' ')"
        SKIP[https:lunet]="no certificate" SKIP[https:nginx]="no certificate"
    fi
    rate_row "HTTPS hello, keep-alive, ECDSA P-256 certificate: wrk -t2 -c100 -d$DURATION, best of $ROUNDS" \
        https:lunet "req/s" "nginx + lua with TLS, 2 workers" https:nginx 1.0
fi

# ---------------------------------------------------------------- reload
# wrk -c100 against http_hello.lua, SIGHUP halfway through: new hosts start,
# the old ones answer their keep-alive clients with `Connection: close` and
# drain. Every request must be answered (issue 12: none refused or cut).
run_reload() {
    local out="$WORK/wrk-reload" log="$WORK/server-reload" half figures
    half=$(awk -v d="$DURATION" 'BEGIN { if (d ~ /^[0-9.]+s$/) print d / 2 }')
    if [ -z "$half" ]; then
        RELOAD_CELL="skipped: BENCH_DURATION=$DURATION is not in seconds (as 5s)"
        return 1
    fi
    start_http_lunet "$log" || { RELOAD_CELL="skipped: lunet did not start"; return 1; }
    record wrk -t2 -c100 -d"$DURATION" --latency "http://$ADDR/"
    record kill -HUP "$SERVER_PID" "# $half s into the wrk run"
    wrk -t2 -c100 -d"$DURATION" --latency "http://$ADDR/" >"$out" 2>&1 &
    local wrk_pid=$!
    sleep "$half"
    kill -HUP "$SERVER_PID"
    wait "$wrk_pid"
    figures=$(wrk_figures "$out")
    if ! grep -q "generation 1 serves" "$log"; then
        note "reload: the server did not reload: $(tail -c 300 "$log" | tr '\n' ' ')"
        RELOAD_CELL="no reload"
    elif [ -z "$figures" ]; then
        note "reload: wrk failed: $(tail -c 300 "$out" | tr '\n' ' ')"
        RELOAD_CELL="wrk failed"
    else
        local errors requests
        read -r _ _ errors _ requests <<<"$figures"
        RELOAD_ERRORS=$errors
        RELOAD_CELL="$errors errors / $(fmt_int "$requests") requests"
        log "reload: $RELOAD_CELL"
    fi
    DETAIL+=("wrk across a reload|$out")
    stop_group "$SERVER_PID"
}

if want reload; then
    log "leg reload"
    RELOAD_ERRORS= RELOAD_CELL=
    command -v wrk >/dev/null || ensure_packages
    if ! command -v wrk >/dev/null; then
        RELOAD_CELL="skipped: wrk not found"
    elif lunet_has server-scripts/http_hello.lua; then
        run_reload
    else
        RELOAD_CELL="skipped: lunet or http_hello.lua missing"
    fi
    row "HTTP hello across a reload: wrk -t2 -c100 -d$DURATION, SIGHUP halfway" \
        "$RELOAD_CELL" "-" "-" "-" "0 errors" "$(verdict "$RELOAD_ERRORS" "<=" 0)"
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
mem_cell() { # NAME [UNIT]
    if [ -n "${MEM_PER[$1]:-}" ]; then
        printf '%s KB/conn (RSS %s -> %s KB, %s conns%s)' "${MEM_PER[$1]}" \
            "$(fmt_int "${MEM_BASE[$1]}")" "$(fmt_int "${MEM_HELD[$1]}")" "$(fmt_int "${MEM_UP[$1]}")" "${2:-}"
    else
        printf 'not measured'
    fi
}

if want mem; then
    log "leg mem"
    if lunet_has server-scripts/echo.lua; then
        lunet_cmd server-scripts/echo.lua
        measure_memory lunet "${LUNET_CMD[@]}"
    fi
    measure_memory raw "$BIN/raw-echo-server" --listen 127.0.0.1:0
    row "RSS per idle connection, $(fmt_int "$HOLD") held by hold-conns, echo.lua" "$(mem_cell lunet)" \
        "raw-echo-server (floor)" "$(mem_cell raw)" "-" "≤ 4 KB/conn" "$(verdict "${MEM_PER[lunet]:-}" "<=" 4)"
fi

# ---------------------------------------------------------------- scale
# lunet load --hold against echo.lua, from 4 loopback source addresses. The
# RSS is read once the server has accepted every connection (its fd count),
# or at the last moment before the holder stops.
measure_scale() {
    local out="$WORK/scale" hard
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$SCALE_HOLD" -gt $((hard - 100)) ]; then
        note "scale: the fd limit is $hard; holding $((hard - 100)) instead of $SCALE_HOLD"
        SCALE_HOLD=$((hard - 100))
    fi
    lunet_cmd server-scripts/echo.lua
    start_server lunet-scale "$out.server" "${LUNET_CMD[@]}" || return 1
    local server=$SERVER_PID
    sleep 1
    local base_rss base_fds
    base_rss=$(rss_kb "$server")
    base_fds=$(fd_count "$server")
    local load=("$BIN/lunet" load --hold "$SCALE_HOLD" --source "$SCALE_SOURCE" --connect-rate 20000
        -d "$SCALE_DURATION" --json "$out.json" "$ADDR")
    record "${load[@]}"
    spawn "$out.load" "${load[@]}"
    local holder=$SPAWNED fds=0 rss=$base_rss now_fds now_rss
    while kill -0 "$holder" 2>/dev/null; do
        now_fds=$(fd_count "$server") now_rss=$(rss_kb "$server")
        kill -0 "$holder" 2>/dev/null || break # its sockets may be closing
        [ "$now_fds" -ge "$fds" ] && fds=$now_fds rss=$now_rss
        if [ $((fds - base_fds)) -ge "$SCALE_HOLD" ]; then
            sleep 1
            now_fds=$(fd_count "$server") now_rss=$(rss_kb "$server")
            kill -0 "$holder" 2>/dev/null && fds=$now_fds rss=$now_rss
            break
        fi
        sleep 0.1
    done
    wait "$holder"
    local status=$?
    stop_group "$holder"
    stop_group "$server"
    local accepted=$((fds - base_fds)) parsed
    parsed=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["up_at_end"], d["peak_up"], d["errors"]["total"])' "$out.json" 2>/dev/null)
    if [ -z "$parsed" ] || [ "$accepted" -le 0 ]; then
        note "lunet load --hold failed (status $status): $(tail -c 300 "$out.load" | tr '\n' ' ')"
        return 1
    fi
    local up peak errors
    read -r up peak errors <<<"$parsed"
    SCALE_UP=$up SCALE_PEAK=$peak SCALE_ERRORS=$errors
    MEM_BASE[scale]=$base_rss MEM_HELD[scale]=$rss MEM_UP[scale]=$accepted
    MEM_PER[scale]=$(python3 -c 'import sys; b, h, n = map(int, sys.argv[1:]); print(f"{(h - b) / n:.2f}")' "$base_rss" "$rss" "$accepted")
    log "scale: up $up/$SCALE_HOLD at the end (peak $peak, $errors errors); RSS $base_rss KB -> $rss KB with $accepted accepted: ${MEM_PER[scale]} KB each"
}

if want scale; then
    log "leg scale"
    if lunet_has server-scripts/echo.lua; then
        measure_scale
        if [ -n "${MEM_PER[scale]:-}" ]; then
            cell="up $(fmt_int "$SCALE_UP")/$(fmt_int "$SCALE_HOLD") at the end (peak $(fmt_int "$SCALE_PEAK"), $SCALE_ERRORS errors); $(mem_cell scale " accepted")"
        else
            cell="not measured"
        fi
    else
        cell="skipped: server-scripts/echo.lua missing or lunet not built"
    fi
    row "RSS per idle connection, $(fmt_int "$SCALE_HOLD") held by lunet load --hold --source $SCALE_SOURCE, echo.lua" \
        "$cell" "-" "-" "-" "≤ 4 KB/conn" "$(verdict "${MEM_PER[scale]:-}" "<=" 4)"
fi

# ---------------------------------------------------------------- connector
# The same server serves both load generators, alternately; the best run of
# each is kept. lunet load gets the same 1 s warmup as the other side.
if want connector; then
    log "leg connector"
    if ! lunet_has server-scripts/http_hello.lua; then
        SKIP[conn-http:load]="lunet or http_hello.lua missing"
    elif ! ensure_packages; then
        SKIP[conn-http:load]=$HTTP_SKIP SKIP[conn-http:wrk]=$HTTP_SKIP
        note "connector vs wrk skipped: $HTTP_SKIP"
    elif start_http_lunet "$WORK/server-conn-http"; then
        for round in $(seq "$ROUNDS"); do
            lunet_load conn-http:load "$round" "$ADDR" -p http -t 2 -c 100
            run_wrk conn-http:wrk "$round" "http://$ADDR/"
        done
        stop_group "$SERVER_PID"
    fi
    rate_row "connector, HTTP: lunet load -p http -t2 -c100 vs wrk -t2 -c100, -d $DURATION, one http_hello.lua server, best of $ROUNDS" \
        conn-http:load "req/s" "wrk -t2 -c100" conn-http:wrk 1.0

    if [ "$LUNET_OK" != 1 ]; then
        SKIP[conn-echo:load]="lunet did not build"
    elif start_server raw-echo "$WORK/server-conn-echo" "$BIN/raw-echo-server" --listen 127.0.0.1:0; then
        for round in $(seq "$ROUNDS"); do
            lunet_load conn-echo:load "$round" "$ADDR" -p echo -t 1 -c 50 --size 64
            echo_load conn-echo:echo-load "$round" "$ADDR"
        done
        stop_group "$SERVER_PID"
    fi
    rate_row "connector, echo: lunet load -p echo -t1 -c50 --size 64 vs echo-load -c 50 --size 64 (1 thread), -d $DURATION, one raw-echo-server, best of $ROUNDS" \
        conn-echo:load "rt/s" "echo-load (mio, 1 thread)" conn-echo:echo-load 1.0
fi

# ---------------------------------------------------------------- RESP
if want resp; then
    log "leg resp (bench/resp.sh)"
    skip=
    [ -f bench/resp.sh ] || skip="bench/resp.sh missing"
    [ -z "$skip" ] && [ ! -f server-scripts/kv.lua ] && skip="server-scripts/kv.lua missing"
    [ -z "$skip" ] && [ "$LUNET_OK" != 1 ] && skip="lunet did not build"
    if [ -z "$skip" ]; then
        cmd=(env LUNET_BIN="$BIN/lunet" BENCH_RESULTS="$WORK/resp.md" bash bench/resp.sh)
        called_leg resp "$LIMIT_RESP" "$WORK/resp.md" \
            "LUNET_BIN=$BIN/lunet RESP_BENCH_REQUESTS=$RESP_BENCH_REQUESTS RESP_BENCH_ROUNDS=$RESP_BENCH_ROUNDS bench/resp.sh" "${cmd[@]}"
    fi
    if [ -n "$skip" ]; then
        note "RESP rows skipped: $skip"
        row "RESP: kv.lua vs redis-server (bench/resp.sh)" "skipped: $skip" "redis-server" "-" "-" "≥ 1.0x" "-"
    else
        # "| SET -c 50 | 1 | kv ops/s | redis ops/s | ratio | runs |"
        while IFS='|' read -r _ test pipeline kv redis r runs _; do
            test=$(echo $test) pipeline=$(echo $pipeline) r=$(echo $r)
            [[ $pipeline =~ ^[0-9]+$ ]] || continue
            row "RESP $test, -P $pipeline: redis-benchmark -n $RESP_BENCH_REQUESTS, median of $RESP_BENCH_ROUNDS" \
                "kv.lua $(echo $kv) ops/s" "redis-server" "$(echo $redis) ops/s" "$r" "≥ 1.0x" "$(verdict "$r" ">=" 1.0)"
        done < <(grep '^|' "$WORK/resp.out")
    fi
fi

# ---------------------------------------------------------------- services
if want services; then
    log "leg services (bench/services.sh)"
    skip=
    [ -f bench/services.sh ] || skip="bench/services.sh missing"
    [ -z "$skip" ] && [ "$LUNET_OK" != 1 ] && skip="lunet did not build"
    if [ -z "$skip" ]; then
        # services.sh reads BENCH_ROUNDS and BENCH_RESULTS too: give it its own.
        cmd=(env LUNET_BIN="$BIN/lunet" BENCH_ROUNDS="$SERVICES_ROUNDS" BENCH_RESULTS= bash bench/services.sh)
        called_leg services "$LIMIT_SERVICES" "$WORK/services.out" \
            "LUNET_BIN=$BIN/lunet BENCH_ROUNDS=$SERVICES_ROUNDS BENCH_CALLS=$BENCH_CALLS BENCH_MESSAGES=$BENCH_MESSAGES BENCH_IDLE=$BENCH_IDLE bench/services.sh" "${cmd[@]}"
    fi
    if [ -n "$skip" ]; then
        note "services rows skipped: $skip"
        row "services (bench/services.sh)" "skipped: $skip" "skynet" "-" "-" "-" "-"
    else
        # "| ping-pong `call`, one pair | 187k calls/s (runs: ...) | ~215k calls/s | 0.87x | >= 2x | missed |"
        reference="skynet"
        while IFS='|' read -r _ what lunet skynet r _ _ _; do
            what=$(echo $what) r=$(echo $r)
            case $what in
            row) reference=$(echo $skynet); continue ;;
            ping-pong*) goal=4 label="services: $what, median of $SERVICES_ROUNDS" ;;
            one-way*) goal=5 label="services: $what, median of $SERVICES_ROUNDS" ;;
            idle*) goal= label="services: $what" ;;
            *) continue ;;
            esac
            if [ -n "$goal" ]; then
                row "$label" "$(echo $lunet)" "$reference" "$(echo $skynet)" "${r%x}" "≥ ${goal}x" "$(verdict "$r" ">=" "$goal")"
            else
                kb=$(echo $lunet | awk '{print $1}')
                row "$label" "$(echo $lunet)" "$reference" "$(echo $skynet)" "${r%x}" "≤ 20 KB" "$(verdict "$kb" "<=" 20)"
            fi
        done < <(grep '^|' "$WORK/services.out")
    fi
fi

# ---------------------------------------------------------------- model
if want model; then
    log "leg model (bench/model.sh)"
    skip=
    [ -f bench/model.sh ] || skip="bench/model.sh missing"
    [ -z "$skip" ] && [ "$LUNET_OK" != 1 ] && skip="lunet did not build"
    if [ -z "$skip" ]; then
        cmd=(env LUNET_BIN="$BIN/lunet" BENCH_ROUNDS="$MODEL_ROUNDS" BENCH_RESULTS= bash bench/model.sh)
        called_leg model "$LIMIT_MODEL" "$WORK/model.out" \
            "LUNET_BIN=$BIN/lunet BENCH_ROUNDS=$MODEL_ROUNDS BENCH_CALLS=$BENCH_CALLS MODEL_SPAWNS=$MODEL_SPAWNS MODEL_RUNTIMES=$MODEL_RUNTIMES MODEL_ATTACHED=$MODEL_ATTACHED MODEL_FIRES=$MODEL_FIRES bench/model.sh" "${cmd[@]}"
    fi
    if [ -n "$skip" ]; then
        note "model rows skipped: $skip"
        row "runtime model (bench/model.sh)" "skipped: $skip" "-" "-" "-" "-" "-"
    else
        # "| Sub call vs ... | 500k calls/s (runs: ...) | plain call: 520k ... | 1.04x | <= 1.15x | met |"
        while IFS='|' read -r _ what lunet reference r goal verdict _; do
            what=$(echo $what) r=$(echo $r) goal=$(echo $goal)
            case $what in
            "Sub call"* | spawn* | memory* | "an event"*) ;;
            *) continue ;;
            esac
            [ "$goal" = "<= 1.15x" ] && goal="≤ 1.15x"
            # "plain call: 156k calls/s": the reference, then its figure.
            reference=$(echo $reference) figure=-
            if [[ $reference == *": "* ]]; then figure=${reference#*: } reference=${reference%%: *}; fi
            row "model: $what" "$(echo $lunet)" "$reference" "$figure" "$r" "$goal" "$(echo $verdict)"
        done < <(grep '^|' "$WORK/model.out")
    fi
fi

# ---------------------------------------------------------------- cluster
if want cluster; then
    log "leg cluster (bench/cluster.sh)"
    skip=
    [ -f bench/cluster.sh ] || skip="bench/cluster.sh missing"
    [ -z "$skip" ] && [ "$LUNET_OK" != 1 ] && skip="lunet did not build"
    [ -z "$skip" ] && ! command -v nats-server >/dev/null && skip="nats-server is not installed"
    if [ -z "$skip" ]; then
        cmd=(env LUNET_BIN="$BIN/lunet" BENCH_ROUNDS="$CLUSTER_ROUNDS" BENCH_RESULTS= bash bench/cluster.sh)
        called_leg cluster "$LIMIT_CLUSTER" "$WORK/cluster.out" \
            "LUNET_BIN=$BIN/lunet BENCH_ROUNDS=$CLUSTER_ROUNDS CLUSTER_CALLS=$CLUSTER_CALLS CLUSTER_SENDS=$CLUSTER_SENDS bench/cluster.sh" "${cmd[@]}"
    fi
    if [ -n "$skip" ]; then
        note "cluster rows skipped: $skip"
        row "cluster (bench/cluster.sh)" "skipped: $skip" "-" "-" "-" "-" "-"
    else
        # "| cross-node `lunet.call`, 1 in flight | 20.1k calls/s (runs: ...) | 31.8k calls/s (runs: ...) | 0.63x | >= 0.7x | missed |"
        while IFS='|' read -r _ what lunet limit r goal verdict _; do
            what=$(echo $what) r=$(echo $r) goal=$(echo $goal)
            case $what in
            cross-node* | "node death"*) ;;
            *) continue ;;
            esac
            [ "$goal" = ">= 0.7x" ] && goal="≥ 0.7x"
            [ "$goal" = "<= 3000 ms" ] && goal="≤ 3000 ms"
            reference="nats-raw (Rust, no Lua)"
            [[ $what == "node death"* ]] && reference=-
            row "cluster: $what" "$(echo $lunet)" "$reference" "$(echo $limit)" "$r" "$goal" "$(echo $verdict)"
        done < <(grep '^|' "$WORK/cluster.out")
    fi
fi

# ---------------------------------------------------------------- lane
if want lane; then
    log "leg lane (bench/lane.sh)"
    skip=
    [ -f bench/lane.sh ] || skip="bench/lane.sh missing"
    [ -z "$skip" ] && [ "$LUNET_OK" != 1 ] && skip="lunet did not build"
    if [ -z "$skip" ]; then
        cmd=(env LUNET_BIN="$BIN/lunet" BENCH_RESULTS="$WORK/lane.md" bash bench/lane.sh)
        COMMANDS+=("LUNET_BIN=$BIN/lunet LANE_BENCH_DURATION=$LANE_BENCH_DURATION LANE_BENCH_ROUNDS=$LANE_BENCH_ROUNDS bench/lane.sh   # its commands: see the appendix")
        run_script "$WORK/lane.out" "$WORK/lane.err" "$LIMIT_LANE" "${cmd[@]}"
        status=$?
        # lane_server.lua opens the database from each of lunet's hosts at
        # once; SQLite may answer "database is locked" to one of them. Once
        # more, from the start, if so.
        if [ "$status" = 1 ] && grep -q 'database is locked' "$WORK/lane.err"; then
            note "bench/lane.sh: a server did not start (SQLite: database is locked, lane_server.lua opening the file from several hosts at once); ran it again"
            rm -f "$WORK/lane.md"
            run_script "$WORK/lane.out" "$WORK/lane.err" "$LIMIT_LANE" "${cmd[@]}"
            status=$?
        fi
        if [ "$status" = 0 ]; then
            DETAIL+=("bench/lane.sh|$WORK/lane.md")
        else
            skip="bench/lane.sh failed (status $status): $(grep -v '^\s*$' "$WORK/lane.err" | tail -3 | tr '\n' ' ' | tail -c 300)"
        fi
    fi
    if [ -n "$skip" ]; then
        note "lane rows skipped: $skip"
        row "lane (bench/lane.sh)" "skipped: $skip" "-" "-" "-" "-" "-"
    else
        python3 - "$WORK/lane.out" "$LANE_BENCH_ROUNDS" "$LANE_BENCH_DURATION" >"$WORK/lane.rows" <<'EOF'
import re, sys
cells = {}
for line in open(sys.argv[1]):
    if line.startswith("|"):
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        cells[c[0]] = c
rounds, duration = sys.argv[2], sys.argv[3]
fast = next((c for k, c in cells.items() if k.startswith("head-of-line: fast p99, fast only")), None)
mixed = next((c for k, c in cells.items() if k.startswith("head-of-line: fast p99, +10% slow")), None)
ratio = next((c for k, c in cells.items() if k.startswith("head-of-line: ratio")), None)
if fast and mixed and ratio:
    print("\t".join([
        f"lane head-of-line: fast requests' p99 with 10% slow (20 ms lane call) / without, median of {rounds}, {duration} s each",
        f"ratio {ratio[1]}: p99 {mixed[1]} with slow requests ({ratio[2]})",
        "same server, fast requests only",
        f"p99 {fast[1]}",
        ratio[1],
        "≤ 2",
        ratio[1],
    ]))
for k, c in cells.items():
    m = re.match(r"SQLite inserts/s, 50 writers, --lane-threads (\d+)", k)
    if m:
        print("\t".join([f"lane: {k}, {duration} s", f"{c[1]} ({c[2]})", "-", "-", "-", "-", "-"]))
EOF
        while IFS=$'\t' read -r a b c d e f g; do
            [ "$f" = "≤ 2" ] && g=$(verdict "$g" "<=" 2)
            row "$a" "$b" "$c" "$d" "$e" "$f" "$g"
        done <"$WORK/lane.rows"
        [ -s "$WORK/lane.rows" ] || note "lane: could not read bench/lane.sh's table"
    fi
fi

# ---------------------------------------------------------------- JSON
# lunet.json against lua-cjson 2.1 under Lua 5.4: the criterion-free bench
# of lua-api (its own loop, the same documents for both).
if want json; then
    log "leg json (cargo bench -p lunet-lua --bench json)"
    skip=
    install_debian_packages lua5.4 lua-cjson || skip=$INSTALL_ERROR
    if [ -z "$skip" ]; then
        record cargo bench -p lunet-lua --bench json
        if ! run_waiting "$WORK/json.out" cargo bench -p lunet-lua --bench json; then
            skip="cargo bench --bench json failed: $(tail -c 300 "$WORK/json.out" | tr '\n' ' ')"
        fi
    fi
    if [ -z "$skip" ] && ! grep -q '^encode-small .*x$' "$WORK/json.out"; then
        skip="no lua-cjson figures: $(grep -m1 'not found' "$WORK/json.out")"
    fi
    if [ -n "$skip" ]; then
        note "JSON rows skipped: $skip"
        row "lunet.json vs lua-cjson" "skipped: $skip" "lua-cjson 2.1, Lua 5.4" "-" "-" "≥ 1.0x" "-"
    else
        DETAIL+=("cargo bench -p lunet-lua --bench json|$WORK/json.out")
        small=$(awk '$1 == "bytes-small" {print $2}' "$WORK/json.out")
        large=$(awk '$1 == "bytes-large" {print $2}' "$WORK/json.out")
        # "encode-small  241000  120000  2.01x"
        for name in encode-small decode-small encode-large decode-large; do
            read -r _ ours theirs r < <(grep -m1 "^$name " "$WORK/json.out")
            bytes=$small
            [ "${name#*-}" = large ] && bytes=$large
            r=${r%x}
            row "lunet.json ${name%-*}, $bytes-byte document, 1 s loop" "$(fmt_int "$ours") ops/s" "lua-cjson 2.1, Lua 5.4" "$(fmt_int "$theirs") ops/s" "$r" "≥ 1.0x" "$(verdict "$r" ">=" 1.0)"
        done
    fi
fi

# ---------------------------------------------------------------- todo
# server-scripts/todo.lua on a fresh SQLite file: POST /todos first (which
# also fills the table), then GET /todos/:id over ids 1..100. Figures, no
# reference.
if want todo; then
    log "leg todo"
    if lunet_has server-scripts/todo.lua; then
        LUNET_CMD=("$BIN/lunet" serve server-scripts/todo.lua listen=127.0.0.1:0 "db=$WORK/todo.sqlite")
        [ -n "${LUNET_WORKERS:-}" ] && LUNET_CMD+=(--workers "$LUNET_WORKERS")
        if start_server lunet-todo "$WORK/server-todo" "${LUNET_CMD[@]}"; then
            for round in $(seq "$ROUNDS"); do
                lunet_load todo:post "$round" "$ADDR" --script bench/todo_client.lua --set op=post -t 1 -c 50
                lunet_load todo:get "$round" "$ADDR" --script bench/todo_client.lua --set op=get -t 1 -c 50
            done
            stop_group "$SERVER_PID"
        fi
    else
        SKIP[todo:post]="lunet or todo.lua missing" SKIP[todo:get]="lunet or todo.lua missing"
    fi
    row "todo.lua POST /todos (SQLite insert per request): lunet load --script bench/todo_client.lua -t1 -c50 -d $DURATION, best of $ROUNDS" \
        "$(rate_cell todo:post "req/s")" "-" "-" "-" "figures" "-"
    row "todo.lua GET /todos/:id (SQLite select per request): lunet load --script bench/todo_client.lua -t1 -c50 -d $DURATION, best of $ROUNDS" \
        "$(rate_cell todo:get "req/s")" "-" "-" "-" "figures" "-"
fi

# ---------------------------------------------------------------- called scripts with tables
# script_leg LEG SCRIPT LIMIT [VAR=VALUE...]: runs SCRIPT with this run's
# lunet; its table rows become rows here (a 4-column row, benchmark | lunet
# | goal | verdict, gets "-" for the reference columns).
script_leg() {
    local leg=$1 script=$2 limit=$3 skip=
    shift 3
    log "leg $leg ($script)"
    [ -f "$script" ] || skip="$script missing"
    [ -z "$skip" ] && [ "$LUNET_OK" != 1 ] && skip="lunet did not build"
    if [ -z "$skip" ]; then
        local cmd=(env LUNET_BIN="$BIN/lunet" BENCH_RESULTS="$WORK/$leg.md" "$@" bash "$script")
        COMMANDS+=("LUNET_BIN=$BIN/lunet${*:+ $*} $script   # its commands: see the appendix")
        if run_script "$WORK/$leg.out" "$WORK/$leg.err" "$limit" "${cmd[@]}"; then
            DETAIL+=("$script|$WORK/$leg.md")
        else
            skip="$script failed (status $?): $(grep -v '^\s*$' "$WORK/$leg.err" | tail -3 | tr '\n' ' ' | tail -c 300)"
        fi
    fi
    if [ -n "$skip" ]; then
        note "$leg rows skipped: $skip"
        row "$leg ($script)" "skipped: $skip" "-" "-" "-" "-" "-"
        return
    fi
    local line cells
    while IFS= read -r line; do
        [[ $line == "| benchmark"* || $line == "| ---"* ]] && continue
        IFS='|' read -r -a cells <<<"$line"
        if [ "${#cells[@]}" -le 5 ]; then # | a | b | goal | verdict |
            ROWS+=("|${cells[1]}|${cells[2]}| - | - | - |${cells[3]}|${cells[4]}|")
        else
            ROWS+=("$line")
        fi
    done < <(grep '^|' "$WORK/$leg.out")
}

want procs && script_leg procs bench/procs.sh "$LIMIT_PROCS" \
    ${SMOKE:+PROCS_BENCH_HOLD=2000 PROCS_BENCH_SECONDS=10}
want fanout && script_leg fanout bench/fanout.sh "$LIMIT_FANOUT" \
    ${SMOKE:+FANOUT_BENCH_MESSAGES=5000}
want resp-hostile && script_leg resp-hostile bench/resp-hostile.sh "$LIMIT_HOSTILE" \
    ${SMOKE:+HOSTILE_ROUNDS=1}

# ---------------------------------------------------------------- report
ELAPSED=$(($(date +%s) - STARTED))

TABLE=$(
    echo "| benchmark | lunet | reference | reference figure | lunet / reference | goal | verdict |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    printf '%s\n' "${ROWS[@]}"
)

mkdir -p "$(dirname "$RESULTS")"
{
    echo "# lunet benchmarks, $DATE"
    echo
    invocation="bench/run.sh${SUBSET:+ ${LEGS[*]}}"
    [ -n "$SMOKE" ] && invocation="BENCH_SMOKE=1 $invocation"
    echo "Written by \`$invocation\` in $((ELAPSED / 60)) min $((ELAPSED % 60)) s$([ -n "$SMOKE" ] && echo ' (smoke run: short, not for publication)');"
    echo "see \`bench/README.md\` for what each row means."
    echo
    echo "$TABLE"
    echo
    echo "Rates from echo-load, wrk and lunet load are the best of $ROUNDS run(s) per side, run"
    echo "alternately (A, B, A, B); p99 is the best run's and all runs are listed. The echo and"
    echo "HTTP rows start a fresh server for each run; the connector rows run both load"
    echo "generators against one server. RESP and services rows are medians, as their scripts"
    echo "report them (every run is in the appendix). Load generators share the 2 cores with"
    echo "the server. Nothing is pinned. Goals are those of the issues (2: echo, HTTP, memory;"
    echo "3: RESP, lane; 4: services; 5: connector, scale; 10: the runtime model; 12: the cluster)."
    echo
    echo "## Machine"
    echo
    echo "- date: $(date '+%F %T %Z')"
    echo "- $(machine)"
    echo "- load average (1, 5, 15 min) before the run: $LOAD_START; at the end (this run's own load included): $(cut -d' ' -f1-3 /proc/loadavg)"
    lunet_line=$(cat "$WORK"/server-* 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | grep -m1 -o 'serving .*')
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
    if [ -n "${NGINX_TLS_CONF:-}" ]; then
        echo
        echo "nginx.conf of the https leg:"
        echo
        echo '```nginx'
        echo "$NGINX_TLS_CONF"
        echo '```'
    fi
    if [ ${#DETAIL[@]} -gt 0 ]; then
        echo
        echo "## Appendix: the called scripts' own reports"
        for entry in "${DETAIL[@]}"; do
            echo
            echo "### ${entry%%|*}"
            echo
            # Their own headings become bold lines, to keep this file's outline.
            sed -e '/./,$!d' -e 's/^## \(.*\)/**\1**/' "${entry#*|}"
        done
    fi
} >"$RESULTS"

echo
echo "$TABLE"
echo
log "done in $((ELAPSED / 60)) min $((ELAPSED % 60)) s; results written to $RESULTS"
