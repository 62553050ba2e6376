#!/usr/bin/env bash
# bench/fanout.sh: one subscriber that never reads, a fan-out of MESSAGES
# (default 50,000) messages of 1 KiB written to it from dispatch sessions
# (server-scripts/fanout.lua): the server's RSS before, at its peak and
# after (issue 13; about 10 s once built).
#
#   bench/fanout.sh
#
# Every message is a `lunet.send` to the host; its dispatch session writes
# it to the subscriber with sock:write. Past --high-water the writers wait;
# those that find the socket's waiting room full, or wait past
# --write-timeout-ms (1 s here), get "overloaded". Goal: the RSS growth is
# bounded by --high-water per socket, whatever the number of writers (the
# issue measured 6.7 -> 191 MB before the bound held across sessions).
# Prints a markdown table; writes it with the machine and the commands to
# BENCH_RESULTS (default bench/results/fanout-YYYY-MM-DD.md).
#
# Knobs (environment):
#   FANOUT_BENCH_MESSAGES=50000   messages
#   FANOUT_BENCH_HIGH_WATER=1048576  --high-water (bytes)
#   LUNET_BIN=PATH                use this lunet binary instead of building one

set -u -o pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_init fanout-bench

MESSAGES=${FANOUT_BENCH_MESSAGES:-50000}
HIGH_WATER=${FANOUT_BENCH_HIGH_WATER:-1048576}
DATE=$(date +%F)
RESULTS=${BENCH_RESULTS:-bench/results/fanout-$DATE.md}

lunet_binary || exit 1

server=("$BIN" serve server-scripts/fanout.lua listen=127.0.0.1:0 --hosts 1
    --high-water "$HIGH_WATER" --write-timeout-ms 1000)
READY='serving ' start_server lunet "$WORK/server.log" "${server[@]}" || exit 1
record python3 "(the driver in bench/fanout.sh)" "$ADDR" "$SERVER_PID" "$MESSAGES"

OUT=$(python3 - "$ADDR" "$SERVER_PID" "$MESSAGES" <<'EOF'
import json, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
pid, messages = int(sys.argv[2]), int(sys.argv[3])

def kib(key):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])

subscriber = socket.create_connection((host, int(port)))
subscriber.sendall(b"sub\n")
assert subscriber.recv(100) == b"subscribed\n"
publisher = socket.create_connection((host, int(port))).makefile("rwb")
def ask(line):
    publisher.write(line.encode() + b"\n")
    publisher.flush()
    return publisher.readline().decode().strip()
time.sleep(0.5)
before, peak_before = kib("VmRSS"), kib("VmHWM")
began = time.time()
assert ask(f"pub {messages} 1024") == f"sent {messages}"
peak = 0
while True:
    stats = ask("stats")
    peak = max(peak, kib("VmRSS"))
    if f"done={messages} " in stats:
        break
    time.sleep(0.05)
seconds = time.time() - began
print(json.dumps({
    "before_kib": before, "peak_kib": max(peak, kib("VmHWM")), "after_kib": kib("VmRSS"),
    "stats": stats, "seconds": round(seconds, 2),
}))
EOF
)
stop_group "$SERVER_PID"
if [ -z "$OUT" ]; then
    log "the driver failed"
    exit 1
fi
read -r BEFORE PEAK AFTER STATS <<<"$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(d["before_kib"], d["peak_kib"], d["after_kib"], d["stats"].replace(" ", ","))' "$OUT")"
GROWTH_MB=$(awk -v a="$BEFORE" -v b="$PEAK" 'BEGIN { printf "%.1f", (b - a) / 1024 }')
BOUND_MB=$(awk -v h="$HIGH_WATER" 'BEGIN { printf "%.1f", 4 * h / 1048576 + 4 }')
WRITTEN_MB=$(awk -v m="$MESSAGES" 'BEGIN { printf "%.0f", m * 1024 / 1048576 }')
log "RSS $BEFORE -> peak $PEAK -> $AFTER KB ($STATS)"

TABLE=$(
    echo "| benchmark | lunet | goal | verdict |"
    echo "| --- | --- | --- | --- |"
    echo "| one subscriber that never reads, fan-out of $(fmt_int "$MESSAGES") x 1 KB ($WRITTEN_MB MB) written from dispatch sessions, --high-water $HIGH_WATER | RSS $(mb "$BEFORE") -> peak $(mb "$PEAK") MB (+$GROWTH_MB MB), $(mb "$AFTER") MB after; writes: ${STATS//,/ } | growth ≤ 4 x --high-water + 4 MB ($BOUND_MB MB) | $(verdict "$GROWTH_MB" "<=" "$BOUND_MB") |"
)
write_results "fan-out to a subscriber that never reads, $DATE"
