#!/usr/bin/env python3
"""HTTP load for the balancer bench (Tests/bench/run.sh, section `balancer`). Standard library
only: one thread per client, each with its own kept-alive http.client connection.

  load.py small  --url BASE --key-file F -c N --seconds S
      GET BASE/v1/models (a small authenticated request that the simulator answers at once)
      in a loop from N clients for S seconds after a 1 s warm-up; prints one JSON line:
      requests, errors, req_per_s, p50_ms, p99_ms.
  load.py tokens --url BASE --key-file F -c N --seconds S --max-tokens T
      POST BASE/v1/completions with max_tokens T and ignore_eos (so the simulator sleeps
      T x its token delay), not streamed; the same JSON line.
  load.py streams --url BASE --key-file F -c N --max-tokens T [--rss-pid PID[,PID...]]
      opens N streamed completions at once, waits until each has its first event, then
      samples the VmRSS of PID (summed over the list) (/proc/PID/status) every 0.2 s while they stay open (the first
      one's end stops it) and prints: opened, errors, rss_kib_before, rss_kib_max.

The key is read from a file (0600), so it is on no command line.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse


def rss_kib(pids):
    """The summed VmRSS (KiB) of the comma-separated process ids (a master and its workers)."""
    total = 0
    for pid in filter(None, pids.split(",")):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["small", "tokens", "streams"])
    p.add_argument("--url", required=True)
    p.add_argument("--key-file", required=True)
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--model", default="sim")
    p.add_argument("--rss-pid", default="", help="PID[,PID...]")
    a = p.parse_args()
    key = open(a.key_file).read().strip()
    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port or 80
    auth = {"Authorization": "Bearer " + key}
    if a.mode == "small":
        method, path, body = "GET", "/v1/models", None
        headers = auth
    else:
        method, path = "POST", "/v1/completions"
        body = json.dumps({"model": a.model, "prompt": "hello", "max_tokens": a.max_tokens,
                           "ignore_eos": True, "stream": a.mode == "streams"}).encode()
        headers = dict(auth, **{"Content-Type": "application/json"})

    if a.mode == "streams":
        return streams(a, host, port, path, body, headers)

    start = time.monotonic() + a.warmup
    end = start + a.seconds
    lat, errors = [], [0]
    lock = threading.Lock()
    go = threading.Barrier(a.concurrency)

    def client():
        conn = None
        mine, err = [], 0
        go.wait()
        while True:
            t = time.monotonic()
            if t >= end:
                break
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=120)
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                ok = False
                if conn is not None:
                    conn.close()
                conn = None
            done = time.monotonic()
            if start <= done < end:
                if ok:
                    mine.append(done - t)
                else:
                    err += 1
            if not ok:
                time.sleep(0.05)
        if conn is not None:
            conn.close()
        with lock:
            lat.extend(mine)
            errors[0] += err

    threads = [threading.Thread(target=client, daemon=True) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    q = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))] * 1000 if lat else float("nan")
    print(json.dumps({"requests": len(lat), "errors": errors[0], "req_per_s": len(lat) / a.seconds,
                      "p50_ms": q(0.50), "p99_ms": q(0.99)}))


def streams(a, host, port, path, body, headers):
    before = rss_kib(a.rss_pid) if a.rss_pid else 0
    lock = threading.Lock()
    state = {"opened": 0, "open": 0, "errors": 0, "ended": 0}
    conns = []
    all_open = threading.Event()
    released = threading.Event()

    def settled():
        if state["opened"] + state["errors"] == a.concurrency:
            all_open.set()

    def one():
        conn = http.client.HTTPConnection(host, port, timeout=120)
        with lock:
            conns.append(conn)
        counted = False
        try:
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            if r.status != 200:
                raise OSError(f"status {r.status}")
            r.readline()  # the first event
            with lock:
                state["opened"] += 1
                state["open"] += 1
                counted = True
                settled()
            while r.readline():
                pass
            with lock:
                state["ended"] += 1
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as e:
            if not released.is_set():
                with lock:
                    state["errors"] += 1
                    if state["errors"] == 1:
                        print(f"load.py: a stream failed: {e}", file=sys.stderr)
                    settled()
        finally:
            if counted:
                with lock:
                    state["open"] -= 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(a.concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    # RSS from the start; "max_all_open" only while every stream is open at once.
    peak, peak_all = 0, 0
    t_all = None
    while time.monotonic() - t0 < 180:
        rss = rss_kib(a.rss_pid) if a.rss_pid else 0
        peak = max(peak, rss)
        with lock:
            everyone = state["open"] == a.concurrency
        if everyone:
            peak_all = max(peak_all, rss)
            t_all = t_all or time.monotonic()
            if time.monotonic() - t_all >= a.seconds:
                break
        elif all_open.is_set() and (state["ended"] or state["errors"]):
            break
        time.sleep(0.1)
    # Close every stream from this side (the endpoint then closes its replica connection).
    released.set()
    with lock:
        for c in conns:
            try:
                if c.sock is not None:
                    c.sock.shutdown(2)
            except OSError:
                pass
    for t in threads:
        t.join(30)
    print(json.dumps({"opened": state["opened"], "errors": state["errors"], "ended_early": state["ended"],
                      "rss_kib_before": before, "rss_kib_max": peak, "rss_kib_max_all_open": peak_all,
                      "seconds_all_open": round(time.monotonic() - t_all, 1) if t_all else 0,
                      "seconds_to_open": round(t_all - t0, 1) if t_all else None}))


if __name__ == "__main__":
    sys.exit(main())
