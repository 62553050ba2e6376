#!/usr/bin/env python3
"""The load generator of bench/lane.sh, talking to bench/lane_server.lua.

  lane_client.py hol --addr HOST:PORT --fast-rate 1000 --slow-pct 10 -d 8 --warmup 1
      Open loop: fast requests ("f") are sent at --fast-rate per second, and
      slow ones ("s", a 20 ms lane call) at the rate that makes them
      --slow-pct percent of all requests (0: none). Each request goes out on
      an idle connection of a pool; the latency of a fast request is from
      its send to its answer. Prints one JSON line: fast p50/p99/p999/max in
      microseconds, counts, and late sends (the client fell behind).

  lane_client.py writes --addr HOST:PORT -c 50 -d 5 --warmup 1
      Closed loop: each of -c connections sends "w" (one SQLite insert
      through the lane) and waits for "ok", again and again. Prints one JSON
      line: acknowledged inserts per second, errors, the client's CPU use.

Open loop with a fixed fast rate means both runs of the head-of-line
comparison offer the same fast load; the slow requests come on top.
"""

import argparse
import asyncio
import json
import resource
import socket
import sys
import time


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def percentile(sorted_values, fraction):
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def open_pool(addr, count):
    host, port = parse_addr(addr)
    pool = asyncio.Queue()
    conns = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append((reader, writer))
        pool.put_nowait((reader, writer))
    return pool, conns


async def head_of_line(args):
    pool, conns = await open_pool(args.addr, args.connections)
    fast_latencies = []
    counts = {"fast": 0, "slow": 0, "errors": 0, "late": 0, "waited_for_connection": 0}
    stop_at = None
    measure_from = None
    pending = set()

    async def request(kind, measured):
        if pool.empty():
            counts["waited_for_connection"] += 1
        reader, writer = await pool.get()
        started = time.perf_counter()
        writer.write(b"s\n" if kind == "slow" else b"f\n")
        line = await reader.readline()
        elapsed = time.perf_counter() - started
        pool.put_nowait((reader, writer))
        if line != b"ok\n":
            counts["errors"] += 1
            return
        if measured:
            counts[kind] += 1
            if kind == "fast":
                fast_latencies.append(elapsed * 1e6)

    # One schedule of (time, kind) merged from the two rates.
    fast_interval = 1.0 / args.fast_rate
    slow_rate = args.fast_rate * args.slow_pct / (100.0 - args.slow_pct) if args.slow_pct > 0 else 0.0
    slow_interval = 1.0 / slow_rate if slow_rate > 0 else None
    start = time.perf_counter()
    measure_from = start + args.warmup
    stop_at = measure_from + args.duration
    next_fast = start
    next_slow = start + (slow_interval / 2 if slow_interval else 0)
    loop = asyncio.get_running_loop()
    while True:
        if slow_interval is not None and next_slow < next_fast:
            due, kind = next_slow, "slow"
            next_slow += slow_interval
        else:
            due, kind = next_fast, "fast"
            next_fast += fast_interval
        if due >= stop_at:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            counts["late"] += 1
        task = loop.create_task(request(kind, due >= measure_from))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=10)
    for _, writer in conns:
        writer.close()
    fast_latencies.sort()
    return {
        "fast_rate": args.fast_rate,
        "slow_pct": args.slow_pct,
        "fast": counts["fast"],
        "slow": counts["slow"],
        "errors": counts["errors"],
        "late_sends": counts["late"],
        "waited_for_connection": counts["waited_for_connection"],
        "p50_us": round(percentile(fast_latencies, 0.50), 1),
        "p99_us": round(percentile(fast_latencies, 0.99), 1),
        "p999_us": round(percentile(fast_latencies, 0.999), 1),
        "max_us": round(fast_latencies[-1], 1) if fast_latencies else 0.0,
    }


async def writes(args):
    pool, conns = await open_pool(args.addr, args.connections)
    counts = {"acked": 0, "errors": 0}
    start = time.perf_counter()
    measure_from = start + args.warmup
    stop_at = measure_from + args.duration
    cpu_at_start = None

    async def writer_loop(reader, writer):
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            writer.write(b"w\n")
            line = await reader.readline()
            if line == b"ok\n":
                if now >= measure_from:
                    counts["acked"] += 1
            else:
                counts["errors"] += 1
                if not line:
                    return

    async def mark_cpu():
        nonlocal cpu_at_start
        await asyncio.sleep(args.warmup)
        cpu_at_start = cpu_seconds()

    marker = asyncio.ensure_future(mark_cpu())
    await asyncio.gather(*(writer_loop(r, w) for r, w in conns))
    await marker
    cpu = cpu_seconds() - (cpu_at_start or 0.0)
    for _, writer in conns:
        writer.close()
    return {
        "connections": args.connections,
        "acked": counts["acked"],
        "errors": counts["errors"],
        "inserts_per_s": round(counts["acked"] / args.duration),
        "client_cpu_pct": round(100.0 * cpu / args.duration),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["hol", "writes"])
    parser.add_argument("--addr", required=True)
    parser.add_argument("-c", "--connections", type=int, default=None)
    parser.add_argument("-d", "--duration", type=float, default=8.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--fast-rate", type=float, default=1000.0, help="hol: fast requests per second")
    parser.add_argument("--slow-pct", type=float, default=10.0, help="hol: slow share of all requests, in percent")
    args = parser.parse_args()
    if args.connections is None:
        args.connections = 64 if args.mode == "hol" else 50
    if args.mode == "hol":
        result = asyncio.run(head_of_line(args))
    else:
        result = asyncio.run(writes(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
