#!/usr/bin/env python3
"""Writes the seed corpora: valid HTTP/2 client openings carrying API requests (tunnel_stream),
plain request texts (api_request) and paths (rel_path), so fuzzing starts past the easy rejections.

Run from anywhere: python3 fuzz/make_seeds.py (the output is checked in)."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
CALLER = [
    (b"x-katachi-user-id", b"u-1"),
    (b"x-katachi-user", b"alice%40example.com"),
    (b"x-katachi-session", b"0123456789abcdef"),
]


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    """HPACK literal header field without indexing, new name (no Huffman)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def request(stream, method, path, extra=(), body=None):
    block = literal(b":method", method) + b"\x87" + literal(b":path", path)  # 0x87 = :scheme https
    block += literal(b":authority", b"agent")
    for name, value in list(CALLER) + list(extra):
        block += literal(name, value)
    end_stream = 0x1 if body is None else 0x0
    out = frame(0x1, 0x4 | end_stream, stream, block)  # HEADERS, END_HEADERS
    if body is not None:
        out += frame(0x0, 0x1, stream, body)  # DATA, END_STREAM
    return out


def opening(*requests):
    settings = frame(0x4, 0x0, 0, b"")
    window = frame(0x8, 0x0, 0, struct.pack(">I", 1 << 20))
    return PREFACE + settings + window + b"".join(requests)


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data)


write("tunnel_stream", "status", opening(request(1, b"GET", b"/v1/status")))
write("tunnel_stream", "read-range", opening(
    request(1, b"GET", b"/v1/workspaces/1/file?path=src/deep/data.bin", [(b"range", b"bytes=10-99")])))
write("tunnel_stream", "tree-and-escape", opening(
    request(1, b"GET", b"/v1/workspaces/1/tree?path=src&depth=3"),
    request(3, b"GET", b"/v1/workspaces/1/file?path=escape%2Fpasswd"),
    request(5, b"GET", b"/v1/workspaces/1/stat?path=..%2F..%2Fetc")))
write("tunnel_stream", "write", opening(
    request(1, b"PUT", b"/v1/workspaces/1/file?path=new.txt&expected=absent",
            [(b"content-length", b"5")], body=b"hello")))
write("tunnel_stream", "search-git", opening(
    request(1, b"GET", b"/v1/workspaces/1/search?query=main&regex=true"),
    request(3, b"GET", b"/v1/workspaces/1/git/status"),
    request(5, b"GET", b"/v1/workspaces/1/git/diff?mode=staged")))
write("tunnel_stream", "reset", opening(
    request(1, b"GET", b"/v1/workspaces/1/file?path=src/deep/data.bin"),
    frame(0x3, 0x0, 1, struct.pack(">I", 0x8))))  # RST_STREAM CANCEL mid-download



def ws_frame(opcode, payload, fin=True):
    """An unmasked (server to client) WebSocket frame, RFC 6455 section 5.2."""
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head += bytes([len(payload)])
    elif len(payload) < 1 << 16:
        head += bytes([126]) + struct.pack(">H", len(payload))
    else:
        head += bytes([127]) + struct.pack(">Q", len(payload))
    return head + payload


def carried(data, cut=40):
    """`data` in binary messages of `cut` bytes (the first one fragmented), a ping between each."""
    parts = [data[i:i + cut] for i in range(0, len(data), cut)]
    out = ws_frame(0x2, parts[0][:10], fin=False) + ws_frame(0x0, parts[0][10:])
    for part in parts[1:]:
        out += ws_frame(0x9, b"ping") + ws_frame(0x2, part)
    return out


write("websocket_carrier", "status", carried(opening(request(1, b"GET", b"/v1/status"))))
write("websocket_carrier", "read-range-close", carried(opening(
    request(1, b"GET", b"/v1/workspaces/1/file?path=src/deep/data.bin", [(b"range", b"bytes=10-99")])))
    + ws_frame(0x8, struct.pack(">H", 1000)))
write("websocket_carrier", "write", carried(opening(
    request(1, b"PUT", b"/v1/workspaces/1/file?path=new.txt&expected=absent",
            [(b"content-length", b"5")], body=b"hello")), cut=500))

caller = b"".join(n + b": " + v + b"\n" for n, v in CALLER)
write("api_request", "status", b"GET /v1/status\n" + caller + b"\n")
write("api_request", "range", b"GET /v1/workspaces/1/file?path=src/main.rs\nrange: bytes=-5\n" + caller + b"\n")
write("api_request", "write", b"PUT /v1/workspaces/1/file?path=a.txt&expected=absent\n" + caller + b"\nhello")
write("api_request", "tree", b"GET /v1/workspaces/1/tree?path=src&depth=2&limit=1\n\n")
write("api_request", "search", b"GET /v1/workspaces/1/search?query=fn+main&path=src\n\n")
write("api_request", "escape", b"GET /v1/workspaces/1/file?path=escape%2Fhostname\n\n")

for name, path in [("plain", b"src/main.rs"), ("dots", b"./a//b/./c"), ("parent", b"a/../b"),
                   ("abs", b"/etc/passwd"), ("win", b"C:\\x\\y"), ("nul", b"a\x00b"),
                   ("utf8", "docs/\u00e9t\u00e9.md".encode())]:
    write("rel_path", name, path)
