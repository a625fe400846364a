#!/usr/bin/env python3
"""Bulk TCP transfers with SHA-256 of every byte, for testing and benchmarking tunnels
(vllmctl tunnel, ssh -L).

  bulk.py server [--port P]          listens on 127.0.0.1 (prints "PORT n"), then for each
                                     connection prints one JSON line: bytes/sha256 received
                                     and sent.
  bulk.py client --port P --size N   sends N pseudo-random bytes while receiving N, then
                                     prints one JSON line: bytes/sha256 sent and received,
                                     and seconds.

Client options for benchmarks:
  --up N / --down N   bytes to send / to ask back (each defaults to --size; 0 is allowed).
  --streams K         K connections at once, each sending --up and receiving --down; the JSON
                      line then holds totals (sent, received), streams and seconds.
  --no-hash           skip SHA-256 on both ends (the sha256 fields are null), so that the
                      load generator costs little next to the tunnel it measures.

The client starts each connection with an 8-byte big-endian count: how many bytes it wants
back; the top bit set means "do not hash". The bytes are slices of a pseudo-random pool
(seeded, generated once) at shifting offsets, so they cost nothing to produce.
"""
import argparse
import hashlib
import json
import random
import selectors
import socket
import struct
import sys
import time

BLOCK = 1 << 20
NO_HASH = 1 << 63
POOL_SIZE = 4 * BLOCK + 4093  # not a multiple of anything a tunnel uses
STRIDE = BLOCK - 77  # consecutive chunks start at shifting offsets of the pool

_pools = {}


def pool(seed):
    if seed not in _pools:
        _pools[seed] = memoryview(random.Random(seed).randbytes(POOL_SIZE))
    return _pools[seed]


class Source:
    """The pseudo-random stream for `seed`: `size` bytes handed out in chunks of <= BLOCK."""

    def __init__(self, size, seed, hashing):
        self.pool = pool(seed)
        self.left = size
        self.chunk = 0
        self.digest = hashlib.sha256() if hashing else None
        self.current = memoryview(b"")

    def next_chunk(self):
        """The next unsent bytes (the rest of the current chunk, or a new one); empty at the end."""
        if not self.current and self.left > 0:
            offset = (self.chunk * STRIDE) % (POOL_SIZE - BLOCK)
            n = min(BLOCK, self.left)
            self.current = self.pool[offset : offset + n]
            if self.digest:
                self.digest.update(self.current)
            self.chunk += 1
            self.left -= n
        return self.current

    def sent(self, n):
        self.current = self.current[n:]

    def sha256(self):
        return self.digest.hexdigest() if self.digest else None


class Stream:
    """One connection's two directions, driven by `run_streams`' selector loop. The client
    side sends its header first; the server side reads one first, then knows what to send."""

    def __init__(self, sock, seed, up=None, down=None, hashing=True):
        self.sock = sock
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.seed = seed
        self.hashing = hashing
        self.source = None
        self.header = b""
        self.incoming_header = b""
        if up is None:  # the server: the header says
            self.awaiting_header = True
        else:
            self.awaiting_header = False
            self.header = memoryview(struct.pack(">Q", down | (0 if hashing else NO_HASH)))
            self.start(up)
        self.received = 0
        self.sending = True
        self.receiving = True

    def start(self, up):
        self.up = up
        self.source = Source(up, self.seed, self.hashing)
        self.digest = hashlib.sha256() if self.hashing else None

    def events(self):
        writing = self.sending and not self.awaiting_header
        return (selectors.EVENT_WRITE if writing else 0) | (selectors.EVENT_READ if self.receiving else 0)

    def on_writable(self):
        while True:
            chunk = self.header if self.header else self.source.next_chunk()
            if not chunk:
                self.sock.shutdown(socket.SHUT_WR)
                self.sending = False
                return
            try:
                n = self.sock.send(chunk)
            except BlockingIOError:
                return
            if self.header:
                self.header = self.header[n:]
            else:
                self.source.sent(n)
            if n < len(chunk):
                return

    def on_readable(self, view):
        if self.awaiting_header:
            piece = self.sock.recv(8 - len(self.incoming_header))
            if not piece:
                raise ConnectionError("closed before the header")
            self.incoming_header += piece
            if len(self.incoming_header) == 8:
                (word,) = struct.unpack(">Q", self.incoming_header)
                self.hashing = not word & NO_HASH
                self.start(word & ~NO_HASH)
                self.awaiting_header = False
            return
        try:
            n = self.sock.recv_into(view)
        except BlockingIOError:
            return
        if n == 0:
            self.receiving = False
            return
        if self.digest:
            self.digest.update(view[:n])
        self.received += n

    def result(self):
        return {
            "sent": self.up,
            "sent_sha256": self.source.sha256(),
            "received": self.received,
            "received_sha256": self.digest.hexdigest() if self.digest else None,
        }


def run_streams(streams, listener=None, on_done=lambda stream: None):
    """Moves every stream's bytes until all are done (and, with a listener, forever)."""
    selector = selectors.DefaultSelector()
    if listener:
        selector.register(listener, selectors.EVENT_READ, None)
    for s in streams:
        selector.register(s.sock, s.events(), s)
    view = memoryview(bytearray(BLOCK))
    live = len(streams)
    while live or listener:
        for key, mask in selector.select():
            s = key.data
            if s is None:
                conn, _ = listener.accept()
                s = Stream(conn, seed=2)
                selector.register(conn, s.events(), s)
                live += 1
                continue
            try:
                if mask & selectors.EVENT_READ:
                    s.on_readable(view)
                if mask & selectors.EVENT_WRITE and s.sending:
                    s.on_writable()
                events = s.events()
            except OSError as e:
                if not listener:
                    raise
                print(json.dumps({"error": str(e)}), flush=True)
                events = 0
            if events == 0:
                selector.unregister(s.sock)
                s.sock.close()
                live -= 1
                if not s.awaiting_header:
                    on_done(s)
            elif events != key.events:
                selector.modify(s.sock, events, s)


def server(port):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    pool(2)
    print("PORT", listener.getsockname()[1], flush=True)
    run_streams([], listener, on_done=lambda s: print(json.dumps(s.result()), flush=True))


def client(port, up, down, streams=1, hashing=True):
    pool(1)
    started = time.monotonic()
    all_streams = [
        Stream(socket.create_connection(("127.0.0.1", port)), 1, up, down, hashing) for _ in range(streams)
    ]
    run_streams(all_streams)
    seconds = time.monotonic() - started
    if streams == 1:
        result = all_streams[0].result()
    else:
        result = {"streams": streams, "sent": up * streams, "received": sum(s.received for s in all_streams)}
    result["seconds"] = seconds
    print(json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["server", "client"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--size", type=int, default=1 << 30)
    parser.add_argument("--up", type=int)
    parser.add_argument("--down", type=int)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--no-hash", action="store_true")
    args = parser.parse_args()
    if args.mode == "server":
        server(args.port)
    else:
        up = args.size if args.up is None else args.up
        down = args.size if args.down is None else args.down
        client(args.port, up, down, args.streams, not args.no_hash)


if __name__ == "__main__":
    sys.exit(main())
