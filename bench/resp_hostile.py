#!/usr/bin/env python3
"""bench/resp_hostile.py: a hostile RESP workload, the same for any server.

    python3 bench/resp_hostile.py HOST:PORT PID [--rounds N] [--mib M]

Each round (N, default 4):
  1. big values: 4 clients SET M (default 16) keys of 1 MiB between them;
  2. a slow reader pipelines 2 x M GETs of them (2 x M MiB of replies) and
     reads nothing for 1 s, then reads them all;
  3. RST mid-write: 8 clients send a SET of 4 MiB but only its first MiB,
     and 8 clients ask for a 1 MiB value; all close with RST (SO_LINGER 0)
     without reading;
  4. the big keys are overwritten once more (new values of the same size).
Then FLUSHALL, every client gone, 6 s of quiet (lunet collects the
garbage of a VM that stays quiet 2 s, and trims the heap a second later).

Prints one JSON line: the server's RSS (KiB, /proc/PID/status) at the
start, its peak (VmHWM, sampled every 50 ms as VmRSS too, the larger
kept), after FLUSHALL, and how many replies were checked.
"""

import json
import socket
import struct
import sys
import threading
import time

MIB = 1024 * 1024


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {key} in /proc/{pid}/status")


class Sampler(threading.Thread):
    """Keeps the largest VmRSS seen (VmHWM is read too at the end)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS"))
            time.sleep(0.05)


def command(*words):
    out = [b"*%d\r\n" % len(words)]
    for word in words:
        if isinstance(word, str):
            word = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(word), word))
    return b"".join(out)


class Client:
    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=30)
        self.buffer = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buffer += chunk

    def line(self):
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self.line()
        kind = line[:1]
        if kind in (b"+", b"-", b":"):
            return line
        if kind == b"$":
            size = int(line[1:])
            if size < 0:
                return None
            while len(self.buffer) < size + 2:
                self._fill()
            value, self.buffer = self.buffer[:size], self.buffer[size + 2:]
            return value
        raise ValueError(f"unexpected reply {line[:40]!r}")

    def reset(self):
        """Closes with RST: SO_LINGER on, 0 s."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self):
        self.sock.close()


def value(round_number, index, size=MIB):
    head = b"r%d-k%d-" % (round_number, index)
    return head + b"v" * (size - len(head))


def round_of(address, round_number, keys, checked):
    # 1. big values, from 4 clients.
    writers = [Client(address) for _ in range(4)]
    for index in range(keys):
        writers[index % 4].send(command("SET", f"big:{index}", value(round_number, index)))
    for index in range(keys):
        assert writers[index % 4].reply() == b"+OK"
        checked[0] += 1
    # 2. a slow reader.
    reader = Client(address)
    reader.send(b"".join(command("GET", f"big:{i % keys}") for i in range(2 * keys)))
    time.sleep(1)
    for i in range(2 * keys):
        got = reader.reply()
        assert got == value(round_number, i % keys), f"GET big:{i % keys}: {got[:40]!r}"
        checked[0] += 1
    reader.close()
    # 3. RST mid-write, both ways.
    for i in range(8):
        partial = Client(address)
        header = b"*3\r\n$3\r\nSET\r\n$%d\r\nhalf:%d\r\n$%d\r\n" % (len(f"half:{i}"), i, 4 * MIB)
        partial.send(header + b"h" * MIB)
        partial.reset()
    for i in range(8):
        quitter = Client(address)
        quitter.send(command("GET", f"big:{i % keys}"))
        time.sleep(0.01)
        quitter.reset()
    # 4. overwritten once more.
    for index in range(keys):
        writers[index % 4].send(command("SET", f"big:{index}", value(round_number + 100, index)))
    for index in range(keys):
        assert writers[index % 4].reply() == b"+OK"
        checked[0] += 1
    for writer in writers:
        writer.close()


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        raise SystemExit(__doc__)
    host, port = args[0].rsplit(":", 1)
    address, pid = (host, int(port)), int(args[1])
    rounds, keys = 4, 16
    if "--rounds" in args:
        rounds = int(args[args.index("--rounds") + 1])
    if "--mib" in args:
        keys = int(args[args.index("--mib") + 1])
    start = status_kib(pid, "VmRSS")
    sampler = Sampler(pid)
    sampler.start()
    checked = [0]
    began = time.time()
    for round_number in range(rounds):
        round_of(address, round_number, keys, checked)
    admin = Client(address)
    admin.send(command("FLUSHALL"))
    assert admin.reply() == b"+OK"
    admin.send(command("DBSIZE"))
    assert admin.reply() == b":0"
    admin.close()
    time.sleep(6)
    sampler.running = False
    sampler.join()
    after = status_kib(pid, "VmRSS")
    peak = max(sampler.peak, status_kib(pid, "VmHWM"))
    print(json.dumps({
        "start_kib": start,
        "peak_kib": peak,
        "after_flush_kib": after,
        "replies_checked": checked[0],
        "rounds": rounds,
        "mib_per_round": keys,
        "seconds": round(time.time() - began, 1),
    }))


if __name__ == "__main__":
    main()
