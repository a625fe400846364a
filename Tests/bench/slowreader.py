"""A client that stops reading a long streamed completion for a while, as a slow client on a
slow link does, then reads it to the end (BalancerBackpressureTests).

    python3 slowreader.py PORT KEY_FILE REPLICA_PORT STALL_SECONDS

Its receive buffer is small (4 KiB), and the stream (40,000 tokens, about 10 MB) is larger than
what the kernel buffers on the way (the balancer's socket takes up to 4 MiB on loopback).
At the end of the stall it reads, with `ss`, the receive queue of the balancer's connections
to the replica (REPLICA_PORT): a balancer that stopped reading the replica leaves the stream
waiting there. Prints one JSON line: that receive queue, the bytes read, and whether the
stream ended with `data: [DONE]`.
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


# At the end of the stall: a balancer that kept reading has drained the replica's connection
# by then (the simulator wrote the whole stream in well under the stall); one that stopped
# leaves the stream waiting there.
time.sleep(stall)
least = min(upstream_recv_q() for _ in range(5))
# Reading again, with room for it (the window's scale was fixed at connect: up to 64 KiB).
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.settimeout(60)
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
print(json.dumps({"upstream_recv_q": least, "bytes": len(got),
                  "done": got.rstrip(b"\r\n0").endswith(b"data: [DONE]")}))
