"""A client that stops reading a long streamed completion for a while, as a slow client on a
slow link does, then reads it to the end (BalancerBackpressureTests).

    python3 slowreader.py PORT KEY_FILE REPLICA_PORT MAX_STALL_SECONDS

Its receive buffer is small (4 KiB), and the stream (40,000 tokens, about 10 MB) is larger than
what the kernel buffers on the way (the balancer's socket takes up to 4 MiB on loopback).
While it does not read, it watches, with `ss`, the receive queue of the balancer's
connections to the replica (REPLICA_PORT): a balancer that stopped reading the replica leaves
the stream waiting there, unchanged. Prints one JSON line: whether that was seen (within
MAX_STALL_SECONDS), the queue, the bytes read in the end, and whether the stream ended with
`data: [DONE]`.
"""
import json, socket, subprocess, sys, time

port, key_file, replica_port, stall = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
key = open(key_file).read().strip()
body = json.dumps({"model": "sim-model", "prompt": "Hello", "max_tokens": 40000, "ignore_eos": True,
                   "stream": True}).encode()
request = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.sendall(request)
got = s.recv(1024)


def upstream_recv_q():
    out = subprocess.run(["ss", "-tnH", "state", "established", f"( dport = :{replica_port} )"],
                         capture_output=True, text=True).stdout
    return max([int(line.split()[0]) for line in out.splitlines() if line.strip()] or [0])


# Stalled: the balancer has stopped reading the replica when the receive queue of its
# connection to the replica holds data and stays the same for a second (neither side moves);
# one that kept reading drains it as the replica writes, and to 0 once the stream is sent.
stuck, last, since = False, -1, time.time()
deadline = time.time() + stall
while time.time() < deadline:
    q = upstream_recv_q()
    if q != last:
        last, since = q, time.time()
    elif q > 0 and time.time() - since >= 1.0:
        stuck = True
        break
    time.sleep(0.1)
# Reading again, with room for it (the window's scale was fixed at connect: up to 64 KiB).
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.settimeout(60)
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
print(json.dumps({"stuck": stuck, "upstream_recv_q": last, "bytes": len(got),
                  "done": got.rstrip(b"\r\n0").endswith(b"data: [DONE]")}))
