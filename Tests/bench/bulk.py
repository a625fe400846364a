#!/usr/bin/env python3
"""Bulk TCP transfer in both directions at once, with SHA-256 of every byte, for testing and
benchmarking tunnels (vllmctl tunnel, ssh -L).

  bulk.py server [--port P]          listens on 127.0.0.1 (prints "PORT n"), then for each
                                     connection prints one JSON line: bytes/sha256 received
                                     and sent.
  bulk.py client --port P --size N   sends N pseudo-random bytes while receiving N, then
                                     prints one JSON line: bytes/sha256 sent and received,
                                     and seconds.

The client starts with an 8-byte big-endian count: how many bytes it wants back.
"""
import argparse
import hashlib
import json
import random
import socket
import struct
import sys
import threading
import time

BLOCK = 1 << 20


def send_stream(sock, size, seed):
    """Sends `size` seeded pseudo-random bytes; returns their SHA-256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    left = size
    while left > 0:
        chunk = rng.randbytes(min(BLOCK, left))
        digest.update(chunk)
        sock.sendall(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def receive_stream(sock, limit=None):
    """Reads until EOF (or `limit` bytes); returns (count, SHA-256)."""
    digest = hashlib.sha256()
    buffer = bytearray(BLOCK)
    view = memoryview(buffer)
    count = 0
    while limit is None or count < limit:
        n = sock.recv_into(view, BLOCK if limit is None else min(BLOCK, limit - count))
        if n == 0:
            break
        digest.update(view[:n])
        count += n
    return count, digest.hexdigest()


def serve_one(conn):
    try:
        header = b""
        while len(header) < 8:
            piece = conn.recv(8 - len(header))
            if not piece:
                return
            header += piece
        (wanted,) = struct.unpack(">Q", header)
        result = {}

        def sender():
            result["sent_sha256"] = send_stream(conn, wanted, seed=2)
            result["sent"] = wanted
            conn.shutdown(socket.SHUT_WR)

        thread = threading.Thread(target=sender)
        thread.start()
        result["received"], result["received_sha256"] = receive_stream(conn)
        thread.join()
        print(json.dumps(result), flush=True)
    finally:
        conn.close()


def server(port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    print("PORT", listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_one, args=(conn,), daemon=True).start()


def client(port, size):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.monotonic()
    sock.sendall(struct.pack(">Q", size))
    result = {}

    def sender():
        result["sent_sha256"] = send_stream(sock, size, seed=1)
        result["sent"] = size
        sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=sender)
    thread.start()
    result["received"], result["received_sha256"] = receive_stream(sock)
    thread.join()
    result["seconds"] = time.monotonic() - started
    sock.close()
    print(json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["server", "client"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--size", type=int, default=1 << 30)
    args = parser.parse_args()
    if args.mode == "server":
        server(args.port)
    else:
        client(args.port, args.size)


if __name__ == "__main__":
    sys.exit(main())
