"""Sends HTTP/1.1 requests pipelined on one connection (all written at once, before any
response is read) and prints each response's status line and body, in the order they came.

    python3 pipelined.py PORT KEY_FILE BIG_BODY_BYTES   (BalancerPipeliningTests)

The requests: a streamed completion (slow: its response ends last if answered out of order),
GET /v1/models, a non-streamed completion, then (with BIG_BODY_BYTES > 0) a completion with a
body of that size, then GET /v1/models with Connection: close. Reads until the server closes.
With BIG_BODY_BYTES -1 it sends one request that no HTTP parser takes (a header line without
a colon) instead.
"""
import json, socket, sys

port, key_file, big = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
key = open(key_file).read().strip()


def request(method, path, body=None, close=False):
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
    data = b""
    if body is not None:
        data = body.encode()
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + data


def completion(stream, prompt="Hello", tokens=6):
    return json.dumps({"model": "sim-model", "prompt": prompt, "max_tokens": tokens, "stream": stream})


if big < 0:
    wire = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nNo colon here\r\n\r\n"
else:
    wire = request("POST", "/v1/completions", completion(True))
    wire += request("GET", "/v1/models")
    wire += request("POST", "/v1/completions", completion(False, tokens=2))
    if big:
        wire += request("POST", "/v1/completions", completion(False, prompt="x" * big))
    wire += request("GET", "/v1/models", close=True)

s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(wire)
buf = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk


def responses(buf):
    while buf:
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        if "content-length" in headers:
            n = int(headers["content-length"])
            body, buf = rest[:n], rest[n:]
        else:  # chunked
            body = b""
            while True:
                size, _, rest = rest.partition(b"\r\n")
                n = int(size, 16)
                body += rest[:n]
                rest = rest[n + 2:]
                if n == 0:
                    break
            buf = rest
        yield lines[0], body.decode()


for status, body in responses(buf):
    print(json.dumps({"status": status, "body": body}))
