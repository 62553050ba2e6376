#!/usr/bin/env bash
# bench/soak.sh: a long run under steady load, watching the servers' memory
# and file descriptors (issue 13). Not part of CI: it takes 10 minutes and
# needs a quiet machine.
#
#   bench/soak.sh                                # 10 minutes, 1,000,000 opens
#   SOAK_SECONDS=60 SOAK_OPENS=50000 bench/soak.sh   # a short check
#
# Two `lunet serve` processes, so that each one's memory is its own: one
# runs server-scripts/echo.lua, the other server-scripts/http_hello.lua.
# For SOAK_SECONDS, at once:
#
#   - echo-load -c 50 --size 64 (closed loop) against the echo server;
#   - wrk -t1 -c50 (keep-alive GET /) against the HTTP server;
#   - SOAK_OPENS connection opens and closes against the echo server:
#     `lunet load --script` whose handler sends one line, reads the echo and
#     returns, so that the connector closes and reconnects, paced with
#     --connect-rate 1.1 * SOAK_OPENS / SOAK_SECONDS, from 127.0.0.1-127.0.0.8
#     (ports for the TIME_WAITs of the client side).
#
# Every SOAK_INTERVAL seconds (10) it reads VmRSS and the number of open
# fds of both servers from /proc/PID; once the load has stopped it waits up
# to SOAK_SETTLE seconds (20) for the fds to come back to the count before
# the load. Verdicts, per server:
#
#   - memory flat after warm-up: RSS at the last sample under load is at
#     most 10 % above the first sample after SOAK_WARMUP seconds (default
#     a tenth of the run);
#   - fds back to the baseline (the count before any load) after the load.
#
# Writes bench/results/soak-YYYY-MM-DD.md (SOAK_RESULTS=FILE elsewhere):
# the verdicts, the load's figures, every sample, the commands and the
# machine. Exits 1 when a verdict is missed or a load failed.
#
# Knobs: SOAK_SECONDS (600), SOAK_OPENS (1000000), SOAK_INTERVAL (10),
# SOAK_WARMUP (SOAK_SECONDS / 10), SOAK_SETTLE (20), SOAK_RESULTS,
# LUNET_BIN (a lunet binary; otherwise a release build), LUNET_WORKERS
# (--workers for both servers).

set -uo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init soak

SECONDS_TOTAL=${SOAK_SECONDS:-600}
OPENS=${SOAK_OPENS:-1000000}
INTERVAL=${SOAK_INTERVAL:-10}
WARMUP=${SOAK_WARMUP:-$((SECONDS_TOTAL / 10))}
SETTLE=${SOAK_SETTLE:-20}
RESULTS=${SOAK_RESULTS:-bench/results/soak-$(date +%F).md}
GROWTH_LIMIT=10 # percent

for knob in SECONDS_TOTAL OPENS INTERVAL WARMUP SETTLE; do
    [[ ${!knob} =~ ^[0-9]+$ ]] || { log "$knob must be a whole number, got '${!knob}'"; exit 2; }
done
[ "$SECONDS_TOTAL" -gt "$WARMUP" ] || { log "SOAK_SECONDS must be longer than SOAK_WARMUP"; exit 2; }
# Paced 10 % above OPENS / SECONDS_TOTAL: the first connections and the
# run's end cost a little of the window, and the count is what is asked.
CONNECT_RATE=$(((OPENS * 11 / 10 + SECONDS_TOTAL - 1) / SECONDS_TOTAL))
LOAD_AVERAGE=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- tools
lunet_binary || exit 1
log "cargo build --release -p lunet-bench"
cargo build --release -p lunet-bench >&2 || { log "lunet-bench does not build"; exit 1; }
ECHO_LOAD=target/release/echo-load
command -v wrk >/dev/null || install_debian_packages wrk || { log "wrk is missing and cannot be installed"; exit 1; }

WORKERS=()
[ -n "${LUNET_WORKERS:-}" ] && WORKERS=(--workers "$LUNET_WORKERS")

# ---------------------------------------------------------------- servers
READY="serving " start_server echo "$WORK/echo-server.log" \
    "$BIN" serve "${WORKERS[@]}" server-scripts/echo.lua listen=127.0.0.1:0 || exit 1
ECHO_PID=$SERVER_PID ECHO_ADDR=$ADDR
READY="serving " start_server http "$WORK/http-server.log" \
    "$BIN" serve "${WORKERS[@]}" server-scripts/http_hello.lua listen=127.0.0.1:0 || exit 1
HTTP_PID=$SERVER_PID HTTP_ADDR=$ADDR
log "echo server $ECHO_PID on $ECHO_ADDR, HTTP server $HTTP_PID on $HTTP_ADDR"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo -; }
fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

SAMPLES=() # "t phase echo_rss echo_fds http_rss http_fds"
sample() { # T PHASE
    SAMPLES+=("$1 $2 $(rss_kib "$ECHO_PID") $(fd_count "$ECHO_PID") $(rss_kib "$HTTP_PID") $(fd_count "$HTTP_PID")")
    log "t=$1 s ($2): echo RSS $(rss_kib "$ECHO_PID") KB, $(fd_count "$ECHO_PID") fds; http RSS $(rss_kib "$HTTP_PID") KB, $(fd_count "$HTTP_PID") fds"
}

sleep 1
sample 0 baseline
read -r _ _ _ ECHO_FDS0 _ HTTP_FDS0 <<<"${SAMPLES[0]}"

# ---------------------------------------------------------------- load
cat >"$WORK/churn.lua" <<'EOF'
-- One line and its echo per connection: the handler returns, the
-- connector closes the connection and opens the next one.
local load = require "load"

load.run(function(sock)
    load.request(function()
        local ok, err = sock:write("soak\n")
        if not ok then return nil, err end
        local line, read_err = sock:readline()
        if not line then return nil, read_err end
        if line ~= "soak" then return nil, "bad echo" end
        return true
    end)
end)
EOF

ECHO_CMD=("$ECHO_LOAD" --addr "$ECHO_ADDR" -c 50 --size 64 -d "${SECONDS_TOTAL}s")
WRK_CMD=(wrk -t1 -c50 -d"${SECONDS_TOTAL}s" --latency "http://$HTTP_ADDR/")
CHURN_CMD=("$BIN" load --script "$WORK/churn.lua" -t1 -c 32 --connect-rate "$CONNECT_RATE"
    --source 127.0.0.1-127.0.0.8 -d "${SECONDS_TOTAL}s" -q --json "$WORK/churn.json" "$ECHO_ADDR")
record "${ECHO_CMD[@]}"
record "${WRK_CMD[@]}"
record "${CHURN_CMD[@]}"
log "load for $SECONDS_TOTAL s: echo-load, wrk, $OPENS opens at $CONNECT_RATE/s"
START=$(date +%s)
spawn "$WORK/echo-load.out" "${ECHO_CMD[@]}"
ECHO_LOAD_PID=$SPAWNED
spawn "$WORK/wrk.out" "${WRK_CMD[@]}"
WRK_PID=$SPAWNED
spawn "$WORK/churn.out" "${CHURN_CMD[@]}"
CHURN_PID=$SPAWNED

loads_running() {
    local pid
    for pid in "$ECHO_LOAD_PID" "$WRK_PID" "$CHURN_PID"; do
        kill -0 "$pid" 2>/dev/null && return 0
    done
    return 1
}

next=$INTERVAL
while loads_running; do
    now=$(($(date +%s) - START))
    if [ "$now" -ge "$next" ]; then
        phase=load
        [ "$now" -lt "$WARMUP" ] && phase=warm-up
        sample "$now" "$phase"
        next=$((next + INTERVAL))
    fi
    # The loads stop by themselves after SECONDS_TOTAL; past twice that,
    # something hangs.
    if [ "$now" -gt $((SECONDS_TOTAL * 2 + 60)) ]; then
        note "the load did not stop within $((SECONDS_TOTAL * 2 + 60)) s; stopped"
        break
    fi
    sleep 1
done
for pid in "$ECHO_LOAD_PID" "$WRK_PID" "$CHURN_PID"; do wait "$pid" 2>/dev/null; done
LOAD_END=$(($(date +%s) - START))
sample "$LOAD_END" stopped

# ---------------------------------------------------------------- after
settled=0
for _ in $(seq "$SETTLE"); do
    if [ "$(fd_count "$ECHO_PID")" -le "$ECHO_FDS0" ] && [ "$(fd_count "$HTTP_PID")" -le "$HTTP_FDS0" ]; then
        settled=1
        break
    fi
    sleep 1
done
sample "$(($(date +%s) - START))" after
[ "$settled" = 1 ] || note "fds not back to the baseline $SETTLE s after the load"

# ---------------------------------------------------------------- figures
ECHO_FIGURES=$(python3 - "$WORK/echo-load.out" <<'EOF' 2>/dev/null
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
        print(f'{d["rate"]:,.0f} round trips/s, p99 {d["p99_us"]:.0f} us, {d["errors"]} errors')
EOF
)
WRK_FIGURES=$(python3 - "$WORK/wrk.out" <<'EOF' 2>/dev/null
import re, sys
text = open(sys.argv[1]).read()
rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
total = re.search(r"(\d+) requests in", text)
errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors += int(bad.group(1)) if bad else 0
if rate and total:
    print(f"{float(rate.group(1)):,.0f} req/s, {int(total.group(1)):,} requests, {errors} errors")
EOF
)
CHURN_FIGURES=$(python3 - "$WORK/churn.json" <<'EOF' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1]))
print(f'{d["connects"]:,} connections opened and closed ({d["requests"]:,} echoed), {d["errors"]["total"]} errors')
EOF
)
CHURN_CONNECTS=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["connects"])' "$WORK/churn.json" 2>/dev/null || echo 0)
FAILED=0
[ -n "$ECHO_FIGURES" ] || { note "echo-load failed: $(tail -c 300 "$WORK/echo-load.out" | tr '\n' ' ')"; FAILED=1; }
[ -n "$WRK_FIGURES" ] || { note "wrk failed: $(tail -c 300 "$WORK/wrk.out" | tr '\n' ' ')"; FAILED=1; }
[ -n "$CHURN_FIGURES" ] || { note "lunet load (opens) failed: $(tail -c 300 "$WORK/churn.out" | tr '\n' ' ')"; FAILED=1; }
[ "$CHURN_CONNECTS" -ge "$OPENS" ] || note "opens: $CHURN_CONNECTS of $OPENS"

# Verdict of one server: COLUMN_RSS COLUMN_FDS BASELINE_FDS -> "row|ok"
verdicts() {
    local rss_col=$1 fds_col=$2 fds0=$3
    printf '%s\n' "${SAMPLES[@]}" | awk -v rc="$rss_col" -v fc="$fds_col" -v warm="$WARMUP" -v fds0="$fds0" -v limit="$GROWTH_LIMIT" '
        # Fields: t, phase, echo RSS, echo fds, http RSS, http fds.
        { n = NF; rss = $(n - 4 + rc); fds = $(n - 4 + fc) }
        $2 == "load" || $2 == "warm-up" { if ($1 >= warm && start == "") start = rss; if ($2 == "load") end_rss = rss; peak = (rss > peak ? rss : peak) }
        $2 == "after" { after_fds = fds }
        END {
            if (start == "" || end_rss == "") { print "no sample after the warm-up (run longer than SOAK_WARMUP + SOAK_INTERVAL)|0"; exit }
            growth = (end_rss - start) * 100 / start
            flat = growth <= limit
            back = after_fds <= fds0
            printf "RSS %d KB after warm-up -> %d KB at the end (%+.1f %%, peak %d KB): %s; fds %d before the load, %d after: %s|%d\n",
                start, end_rss, growth, peak, flat ? "flat" : "**grew**", fds0, after_fds, back ? "back to the baseline" : "**not back**", flat && back
        }'
}
ECHO_VERDICT=$(verdicts 1 2 "$ECHO_FDS0")
HTTP_VERDICT=$(verdicts 3 4 "$HTTP_FDS0")
OK=1
[ "${ECHO_VERDICT##*|}" = 1 ] && [ "${HTTP_VERDICT##*|}" = 1 ] && [ "$FAILED" = 0 ] || OK=0

# ---------------------------------------------------------------- results
mkdir -p "$(dirname "$RESULTS")"
{
    echo "# Soak: $SECONDS_TOTAL s of echo and HTTP load, $(fmt_int "$OPENS") opens ($(date +%F))"
    echo
    echo "Machine: $(machine); load average before: $LOAD_AVERAGE."
    echo "Made by \`bench/soak.sh\` (SOAK_SECONDS=$SECONDS_TOTAL SOAK_OPENS=$OPENS SOAK_INTERVAL=$INTERVAL SOAK_WARMUP=$WARMUP)."
    echo
    echo "| server | verdict |"
    echo "| --- | --- |"
    echo "| echo.lua (pid $ECHO_PID) | ${ECHO_VERDICT%|*} |"
    echo "| http_hello.lua (pid $HTTP_PID) | ${HTTP_VERDICT%|*} |"
    echo
    echo "Overall: $([ "$OK" = 1 ] && echo "**pass**: memory flat after warm-up (growth ≤ $GROWTH_LIMIT %), fds back to the baseline" || echo "**fail**")."
    echo
    echo "Load (all at once, $LOAD_END s):"
    echo
    echo "- echo: ${ECHO_FIGURES:-failed}"
    echo "- HTTP: ${WRK_FIGURES:-failed}"
    echo "- opens and closes: ${CHURN_FIGURES:-failed}"
    echo
    echo "Samples (RSS in KB, fds from /proc/PID/fd):"
    echo
    echo "| t (s) | phase | echo RSS | echo fds | http RSS | http fds |"
    echo "| --- | --- | --- | --- | --- | --- |"
    for row in "${SAMPLES[@]}"; do
        read -r -a f <<<"$row"
        n=${#f[@]}
        echo "| ${f[0]} | ${f[*]:1:n-5} | ${f[n-4]} | ${f[n-3]} | ${f[n-2]} | ${f[n-1]} |"
    done
    if [ ${#NOTES[@]} -gt 0 ]; then
        echo
        echo "Notes:"
        echo
        printf -- '- %s\n' "${NOTES[@]}"
    fi
    echo
    echo "Commands:"
    echo
    echo '```sh'
    printf '%s\n' "${COMMANDS[@]}"
    echo '```'
    echo
    echo "churn.lua (written by bench/soak.sh):"
    echo
    echo '```lua'
    cat "$WORK/churn.lua"
    echo '```'
} >"$RESULTS"
log "results in $RESULTS"
log "echo: ${ECHO_VERDICT%|*}"
log "http: ${HTTP_VERDICT%|*}"
[ "$OK" = 1 ]
