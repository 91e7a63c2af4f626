#!/usr/bin/env python3
"""Writes the seed corpora: valid HTTP/2 client openings carrying API requests (tunnel_stream),
plain request texts (api_request), paths (rel_path), signed agent calls (signed_request), device-flow
forms (device_flow) and browser calls for the relay to forward (forwarding), so fuzzing starts past
the easy rejections.

Run from anywhere: python3 fuzz/make_seeds.py (the output is checked in)."""

import hashlib
import hmac
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


# --- signed_request: the fuzz target's clock and secret (fuzz_targets/signed_request.rs)
NOW = 1_700_000_000
SECRET = b"fuzz-agent-signing-secret"
NONCE = "00112233445566778899aabbccddeeff"


def signed(method, path, body, timestamp=NOW, nonce=NONCE, drop=(), replace=None):
    """A request text signed as the agent signs it, `drop` leaving headers out, `replace` overriding."""
    canonical = "\n".join(["v1", method.upper(), path, str(timestamp), nonce,
                           hashlib.sha256(body).hexdigest()])
    signature = hmac.new(SECRET, canonical.encode(), hashlib.sha256).hexdigest()
    headers = {
        "x-katachi-agent": "agt_0123456789abcdef01234567",
        "x-katachi-timestamp": str(timestamp),
        "x-katachi-nonce": nonce,
        "x-katachi-signature": signature,
        "authorization": "Bearer " + "ab" * 32,
        "content-type": "application/json",
    }
    headers.update(replace or {})
    lines = [f"{method} {path}"] + [f"{n}: {v}" for n, v in headers.items() if n not in drop]
    return ("\n".join(lines) + "\n\n").encode() + body


BEAT = b'{"version":"0.1.0","workspaces":1}'
write("signed_request", "heartbeat", signed("POST", "/api/agent/heartbeat", BEAT))
write("signed_request", "events", signed("POST", "/api/agent/events?x=1",
      b'{"events":[{"event_id":"e1","kind":"read","at":1,"payload":"{}"}]}'))
write("signed_request", "tunnel", signed("GET", "/api/agent/tunnel", b"",
      replace={"upgrade": "katachi-tunnel/1", "connection": "upgrade"}))
write("signed_request", "edge-of-window", signed("POST", "/api/agent/heartbeat", BEAT, timestamp=NOW - 30))
write("signed_request", "stale", signed("POST", "/api/agent/heartbeat", BEAT, timestamp=NOW - 31))
write("signed_request", "future", signed("POST", "/api/agent/heartbeat", BEAT, timestamp=NOW + 31))
# found by the target: a timestamp with a leading zero was read as the number it spells
write("signed_request", "leading-zero", signed("POST", "/api/agent/heartbeat", BEAT,
      replace={"x-katachi-timestamp": "0" + str(NOW)}))
write("signed_request", "upper-nonce", signed("POST", "/api/agent/unregister", b"", nonce=NONCE.upper()))
write("signed_request", "missing-nonce", signed("POST", "/api/agent/heartbeat", BEAT, drop=("x-katachi-nonce",)))
write("signed_request", "basic-auth", signed("POST", "/api/agent/heartbeat", BEAT,
      replace={"authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"}))
write("signed_request", "bad-signature", signed("POST", "/api/agent/mcp/call", b'{"server_id":"s","tool":"t"}',
      replace={"x-katachi-signature": "00" * 32}))

# --- device_flow: `T` + a token form, anything else + a device authorization form
GRANT = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
write("device_flow", "code", b"Dclient_id=katachi-agent&scope=agent&device_name=laptop&device_os=Debian+12")
write("device_flow", "code-blank", b"Dclient_id=katachi-agent&device_name=+++&device_os=")
write("device_flow", "code-control", b"Dclient_id=katachi-agent&device_name=a%0Ab&device_os=%1B%5B31m")
write("device_flow", "code-direction", b"Dclient_id=katachi-agent&device_name=laptop%E2%80%AEexe.txt&device_os=a%E2%80%A8b")
write("device_flow", "code-long", b"Dclient_id=katachi-agent&device_name=" + "%C3%A9".encode() * 101)
write("device_flow", "code-client", b"Dclient_id=other&device_name=x")
write("device_flow", "code-duplicate", b"Dclient_id=katachi-agent&client_id=katachi-agent")
write("device_flow", "token", ("Tgrant_type=" + GRANT + "&device_code=" + "0f" * 32 +
                               "&client_id=katachi-agent").encode())
write("device_flow", "token-grant", b"Tgrant_type=password&device_code=abc&client_id=katachi-agent")
write("device_flow", "token-missing", ("Tgrant_type=" + GRANT + "&client_id=katachi-agent").encode())
write("device_flow", "token-long", ("Tgrant_type=" + GRANT + "&device_code=" + "a" * 129 +
                                    "&client_id=katachi-agent").encode())

# --- forwarding: the forwarding instance's session hash, then the browser's request to the relay
SESSION = hashlib.sha256(b"session").hexdigest()
AGENT = "agt_0123456789abcdef01234567"


def browser(method, path, headers=(), session=SESSION):
    lines = [session, f"{method} {path}"] + [f"{n}: {v}" for n, v in headers]
    return ("\n".join(lines) + "\n\n").encode()


BROWSER = [("cookie", "katachi_session=secret"), ("origin", "https://relay.example"),
           ("x-katachi-user-id", "forged"), ("x-katachi-internal-session", "ff"),
           ("accept", "application/json")]
write("forwarding", "status", browser("GET", f"/agents/{AGENT}/api/v1/status", BROWSER))
write("forwarding", "read-range", browser("GET", f"/agents/{AGENT}/api/v1/workspaces/1/file?path=src%2Fmain.rs",
      BROWSER + [("range", "bytes=0-99"), ("if-range", '"etag"'), ("if-none-match", '"a", "b"')]))
write("forwarding", "write", browser("PUT", f"/agents/{AGENT}/api/v1/workspaces/1/file?path=a.txt&expected=absent",
      BROWSER + [("content-type", "text/plain"), ("content-length", "5"), ("if-match", '"x"')]))
write("forwarding", "encoded-id", browser("GET", "/agents/agt%5F1/api/v1/status"))
write("forwarding", "slash-id", browser("GET", "/agents/a%2Fb/api/v1/status"))
write("forwarding", "dots", browser("DELETE", "/agents/../api/../../v1/x?y=%2E%2E"))
write("forwarding", "double-slash", browser("GET", f"/agents/{AGENT}/api//evil.example/v1?q"))
write("forwarding", "bad-session", browser("GET", f"/agents/{AGENT}/api/v1/status", session="not hex"))
write("forwarding", "empty-session", browser("GET", f"/agents/{AGENT}/api/v1/status", session=""))
