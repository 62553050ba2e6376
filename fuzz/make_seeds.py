#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/TARGET/: a few dozen small,
valid or nearly valid inputs per target, from which libFuzzer mutates.

    python3 fuzz/make_seeds.py      # rewrites fuzz/seeds/

Each file is named after the SHA-1 of its bytes, as libFuzzer names its
own, so a seed found again by a run is not stored twice."""

import hashlib
import os
import shutil
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def resp_command_seeds():
    def multibulk(*args):
        out = b"*%d\r\n" % len(args)
        for arg in args:
            out += b"$%d\r\n%s\r\n" % (len(arg), arg)
        return out

    yield multibulk(b"PING")
    yield multibulk(b"SET", b"key", b"value")
    yield multibulk(b"GET", b"key") + multibulk(b"DEL", b"a", b"b")
    yield multibulk(b"SET", b"k", b"\x00\xff\r\n", b"EX", b"10")
    yield multibulk(b"MSET", *[b"k%d" % i for i in range(10)])
    yield multibulk(b"SET", b"big", b"x" * 400)
    yield multibulk()
    yield b"*-1\r\n"
    yield b"*0\r\n*1\r\n$4\r\nPING\r\n"
    yield b"PING\r\n"
    yield b"SET a b\n"
    yield b'SET "a b" \'c d\'\r\n'
    yield b'SET "\\x41\\n\\t" x\r\n'
    yield b"SET 'it\\'s' v\r\n"
    yield b"\r\n"
    yield b"GET a\x00b\r\n"
    yield b'SET "unbalanced\r\n'
    yield b"*2\r\n$3\r\nGET\r\n$-1\r\n"
    yield b"*1\r\n:3\r\n"
    yield b"*99999999999999999999\r\n"
    yield b"*2\r\n$3\r\nGET\r\n$0300\r\n"
    yield b"*1\r\n$3\r\nGET" # incomplete
    yield b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$600\r\n"
    yield b"*" + b"1" * 300
    yield b"A" * 300
    yield b"PING\r\nPING\r\n" + multibulk(b"ECHO", b"hello")


def resp_reply_seeds():
    yield b"+OK\r\n"
    yield b"-ERR unknown command 'x'\r\n"
    yield b":0\r\n:-42\r\n:9223372036854775807\r\n"
    yield b":-9223372036854775808\r\n"
    yield b"$5\r\nhello\r\n"
    yield b"$0\r\n\r\n"
    yield b"$-1\r\n"
    yield b"*-1\r\n"
    yield b"*0\r\n"
    yield b"*3\r\n:1\r\n$1\r\na\r\n+b\r\n"
    yield b"*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n$-1\r\n"
    yield b"*1\r\n" * 9 + b":1\r\n"
    yield b"$3\r\nab\r\r\n"
    yield b"+no end"
    yield b"?what\r\n"
    yield b"+OK\n"
    yield b":12a\r\n"
    yield b"$600\r\n"
    yield b"*65\r\n"
    yield b"+" + b"s" * 300 + b"\r\n"
    yield b"$10\r\n\x00\x01\x02\r\n\xff\xfe\xfd\x80\r\n"
    yield b"-a\nb\r\n"


def http_request_seeds():
    yield b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    yield b"GET /path?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    yield b"GET / HTTP/1.0\r\n\r\n"
    yield b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    yield b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    yield b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhel"
    yield b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
    yield (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    yield (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"A\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n")
    yield (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
    yield (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
    yield (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"ffffffffffffffffff\r\n")
    yield (b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok")
    yield b"GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n"
    yield b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
    yield b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    yield b"GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n"
    yield b"GET http://example.com?q HTTP/1.1\r\nHost: example.com\r\n\r\n"
    yield (b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    yield b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    yield b"GET / HTTP/1.1\r\n\r\n"
    yield b"get / HTTP/1.1\r\nHost: a\r\n\r\n"
    yield b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"
    yield b"GET /#frag HTTP/1.1\r\nHost: a\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"
    yield b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 9 + b"\r\n"
    yield b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 500 + b"\r\n\r\n"
    yield b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"
    yield b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n"


def websocket_seeds():
    def frame(opcode, payload, fin=True, mask=None, rsv=0):
        out = bytes([(0x80 if fin else 0) | rsv | opcode])
        bit = 0x80 if mask else 0
        n = len(payload)
        if n < 126:
            out += bytes([bit | n])
        elif n <= 0xFFFF:
            out += bytes([bit | 126]) + struct.pack(">H", n)
        else:
            out += bytes([bit | 127]) + struct.pack(">Q", n)
        if mask:
            out += mask
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return out + payload

    key = b"\x12\x34\x56\x78"
    # A leading byte picks the role: 0 server (masked frames), 1 client.
    for role, mask in ((b"\x00", key), (b"\x01", None)):
        yield role + frame(1, b"hello", mask=mask)
        yield role + frame(2, bytes(range(200)), mask=mask)
        yield role + frame(1, b"frag", fin=False, mask=mask) + frame(9, b"ping", mask=mask) + frame(0, b"ment", mask=mask)
        yield role + frame(2, b"a", fin=False, mask=mask) + frame(0, b"b", fin=False, mask=mask) + frame(0, b"c", mask=mask)
        yield role + frame(8, struct.pack(">H", 1000) + b"bye", mask=mask)
        yield role + frame(8, b"", mask=mask)
        yield role + frame(8, b"\x03", mask=mask)
        yield role + frame(8, struct.pack(">H", 1005), mask=mask)
        yield role + frame(8, struct.pack(">H", 4000) + b"\xff", mask=mask)
        yield role + frame(9, b"", mask=mask) + frame(10, b"pong", mask=mask)
        yield role + frame(9, b"x" * 126, mask=mask)
        yield role + frame(1, b"\xc3\x28", mask=mask)
        yield role + frame(1, "héllo ☃".encode(), mask=mask)
        yield role + frame(0, b"orphan", mask=mask)
        yield role + frame(1, b"a", fin=False, mask=mask) + frame(1, b"b", mask=mask)
        yield role + frame(1, b"x", mask=mask, rsv=0x40)
        yield role + bytes([0x83, 0x80 if mask else 0]) + (mask or b"")
        yield role + frame(2, b"y" * 300, mask=mask)
        yield role + frame(2, b"z" * 250, fin=False, mask=mask) * 5
    yield b"\x00" + frame(1, b"unmasked to a server")
    yield b"\x01" + frame(1, b"masked to a client", mask=key)
    yield b"\x01\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x01"
    yield b"\x01\x82\x7e\x01"


def lua_codec_seeds():
    NIL, FALSE, TRUE, INT, FLOAT, STR, TABLE = range(7)

    def count(n):
        return struct.pack("<I", n)

    def integer(n):
        return bytes([INT]) + struct.pack("<q", n)

    def number(x):
        return bytes([FLOAT]) + struct.pack("<d", x)

    def string(s):
        return bytes([STR]) + count(len(s)) + s

    def table(items=(), pairs=()):
        out = bytes([TABLE]) + count(len(items)) + count(len(pairs))
        for item in items:
            out += item
        for key, value in pairs:
            out += key + value
        return out

    def message(*values):
        return count(len(values)) + b"".join(values)

    yield message()
    yield message(bytes([NIL]), bytes([TRUE]), bytes([FALSE]))
    yield message(integer(42), integer(-2**63), integer(2**63 - 1))
    yield message(number(3.5), number(-0.0), number(float("nan")), number(float("inf")))
    yield message(string(b""), string(b"hello\x00\xff"))
    yield message(string(b"ping"), integer(7))
    yield message(table([integer(1), integer(2), string(b"three")]))
    yield message(table(pairs=[(string(b"a"), integer(1)), (string(b"b"), table())]))
    yield message(table([integer(1)], [(integer(10), string(b"ten")), (number(1.5), TRUE.to_bytes(1, "little"))]))
    yield message(table(pairs=[(table(), integer(1))]))
    yield message(table([bytes([NIL]), integer(2)]))
    yield message(table(pairs=[(bytes([NIL]), integer(1))]))
    yield message(table(pairs=[(number(float("nan")), integer(1))]))
    yield message(table(pairs=[(number(2.0), integer(1)), (integer(2), integer(3))]))
    nested = table()
    for _ in range(31):
        nested = table([nested])
    yield message(nested)
    yield message(table([nested]))
    yield count(0xFFFFFFFF)
    yield message(bytes([7]))
    yield message(bytes([STR]) + count(1000) + b"short")
    yield message(bytes([TABLE]) + count(0xFFFF) + count(0))
    yield message(table([string(b"x" * 100)] * 10))


def json_seeds():
    yield b"null"
    yield b"true"
    yield b" false "
    yield b"0"
    yield b"-0"
    yield b"-12.5e+3"
    yield b"9223372036854775807"
    yield b"-9223372036854775808"
    yield b"9223372036854775808"
    yield b"1e400"
    yield b"0.1"
    yield b'"hello"'
    yield b'"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00"'
    yield '"héllo ☃ 😀"'.encode()
    yield b'"\\ud800"'
    yield b"[]"
    yield b"{}"
    yield b'[1, 2.0, "three", null, true, [], {}]'
    yield b'{"a": 1, "b": [1, 2, {"c": null}], "d": {"e": "f"}}'
    yield b'{"a": 1, "a": 2}'
    yield b'{"": ""}'
    yield b"[" * 50 + b"]" * 50
    yield b'{"a":' * 20 + b"1" + b"}" * 20
    yield b"[1,]"
    yield b'{"a" 1}'
    yield b"01"
    yield b"1."
    yield b"[1] x"
    yield b'"a\tb"'
    yield b'"\xff"'
    yield b"nul"
    yield b"[\n\t1\r\n]"


SEEDS = {
    "resp_command": resp_command_seeds,
    "resp_reply": resp_reply_seeds,
    "http_request": http_request_seeds,
    "websocket": websocket_seeds,
    "message_codec": lua_codec_seeds,
    "json": json_seeds,
}


def main():
    for target, make in SEEDS.items():
        folder = os.path.join(ROOT, target)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        for seed in make():
            name = hashlib.sha1(seed).hexdigest()
            with open(os.path.join(folder, name), "wb") as out:
                out.write(seed)


if __name__ == "__main__":
    main()
