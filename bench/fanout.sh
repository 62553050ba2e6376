#!/usr/bin/env bash
# bench/fanout.sh: one subscriber that never reads, a fan-out of MESSAGES
# (default 50,000) messages of 1 KiB written to it from dispatch sessions
# (server-scripts/fanout.lua): the server's RSS before, at its peak and
# after (issue 13; about 20 s once built).
#
#   bench/fanout.sh
#
# Every message is a `lunet.send` to the host; its dispatch session writes
# it to the subscriber with sock:write. Past --high-water the writers wait;
# those that find the socket's waiting room full, or wait past
# --write-timeout-ms (1 s here), get "overloaded". Goal: the RSS growth is
# bounded by --high-water per socket, whatever the number of writers (the
# issue measured 6.7 -> 191 MB before the bound held across sessions).
# The messages cost memory of their own, socket or not (the publisher
# sends them all at once: its mailbox holds them, ~100 bytes each), so the
# same run without a subscriber comes first, on a fresh server; the
# socket's share is the difference of the two growths.
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

# drive SUBSCRIBERS: a fresh server, SUBSCRIBERS (0 or 1) subscribers that
# never read, MESSAGES published; prints the driver's JSON line.
drive() {
    READY='serving ' start_server lunet "$WORK/server.log" "${server[@]}" || return 1
    record python3 "(the driver in bench/fanout.sh)" "$ADDR" "$SERVER_PID" "$MESSAGES" "$1"
    python3 - "$ADDR" "$SERVER_PID" "$MESSAGES" "$1" <<'EOF'
import json, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
pid, messages, subscribers = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def kib(key):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])

held = []
for _ in range(subscribers):
    subscriber = socket.create_connection((host, int(port)))
    subscriber.sendall(b"sub\n")
    assert subscriber.recv(100) == b"subscribed\n"
    held.append(subscriber)
publisher = socket.create_connection((host, int(port))).makefile("rwb")
def ask(line):
    publisher.write(line.encode() + b"\n")
    publisher.flush()
    return publisher.readline().decode().strip()
time.sleep(0.5)
before = kib("VmRSS")
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
    local status=$?
    stop_group "$SERVER_PID"
    return $status
}

# What the messages cost without a socket to write to (the publisher's
# mailbox holds them all at once), then with the subscriber: the
# difference is the socket's share, what the write bound holds.
# (Not in $(...): the commands it records are kept.)
drive 0 >"$WORK/bare.json" && drive 1 >"$WORK/subscriber.json"
BARE=$(cat "$WORK/bare.json") OUT=$(cat "$WORK/subscriber.json" 2>/dev/null)
if [ -z "$OUT" ] || [ -z "$BARE" ]; then
    log "the driver failed"
    exit 1
fi
read -r BEFORE PEAK AFTER STATS <<<"$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(d["before_kib"], d["peak_kib"], d["after_kib"], d["stats"].replace(" ", ","))' "$OUT")"
read -r BARE_BEFORE BARE_PEAK <<<"$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); print(d["before_kib"], d["peak_kib"])' "$BARE")"
GROWTH_MB=$(awk -v a="$BEFORE" -v b="$PEAK" 'BEGIN { printf "%.1f", (b - a) / 1024 }')
BARE_MB=$(awk -v a="$BARE_BEFORE" -v b="$BARE_PEAK" 'BEGIN { printf "%.1f", (b - a) / 1024 }')
SHARE_MB=$(awk -v g="$GROWTH_MB" -v b="$BARE_MB" 'BEGIN { printf "%.1f", g - b }')
BOUND_MB=$(awk -v h="$HIGH_WATER" 'BEGIN { printf "%.1f", 4 * h / 1048576 + 4 }')
WRITTEN_MB=$(awk -v m="$MESSAGES" 'BEGIN { printf "%.0f", m * 1024 / 1048576 }')
log "RSS $BEFORE -> peak $PEAK -> $AFTER KB ($STATS); without a subscriber $BARE_BEFORE -> $BARE_PEAK KB"

TABLE=$(
    echo "| benchmark | lunet | goal | verdict |"
    echo "| --- | --- | --- | --- |"
    echo "| one subscriber that never reads, fan-out of $(fmt_int "$MESSAGES") x 1 KB ($WRITTEN_MB MB) written from dispatch sessions, --high-water $HIGH_WATER | RSS $(mb "$BEFORE") -> peak $(mb "$PEAK") MB (+$GROWTH_MB MB), $(mb "$AFTER") MB after, the socket's share +$SHARE_MB MB (the same messages without a subscriber: +$BARE_MB MB, the publisher's mailbox); writes: ${STATS//,/ } | the socket's share ≤ 4 x --high-water + 4 MB ($BOUND_MB MB) | $(verdict "$SHARE_MB" "<=" "$BOUND_MB") |"
)
write_results "fan-out to a subscriber that never reads, $DATE"
