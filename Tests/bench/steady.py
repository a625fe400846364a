"""A steady client for renewal (issue 15), used by `make bench` (Tests/bench/renew.sh) and
by RenewTests: a chat request every 100 ms (every fourth streamed), each on its own thread so
that a slow one does not hold the cadence back, to the base URL read from URL_FILE before
each request, with the key read once from KEY_FILE (0600; a key never goes on a command
line), until STOP exists. Prints one JSON object: successes, failures (the first few reasons,
timed), and the longest time between two successful responses (max_gap, seconds).

    python3 steady.py URL_FILE KEY_FILE STOP
"""
import json
import os
import sys
import threading
import time
import urllib.request

url_file, key_file, stop = sys.argv[1], sys.argv[2], sys.argv[3]
with open(key_file) as f:
    key = f.read().strip()
lock = threading.Lock()
ok, failed, errors, done_at = 0, 0, [], []


def one(i):
    global ok, failed
    stream = i % 4 == 0
    try:
        base = open(url_file).read().strip()
        body = {"model": "sim", "messages": [{"role": "user", "content": "hi %d" % i}],
                "max_tokens": 8, "stream": stream}
        req = urllib.request.Request(
            base + "/v1/chat/completions", data=json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            text = r.read().decode()
            good = r.status == 200 and ("[DONE]" in text if stream else "choices" in text)
            why = "status %d: %s" % (r.status, text[:200])
    except Exception as e:  # noqa: BLE001 - every failure counts
        good, why = False, repr(e)[:200]
    with lock:
        if good:
            ok += 1
            done_at.append(time.monotonic())
        else:
            failed += 1
            if len(errors) < 5:
                errors.append("%s %s" % (time.strftime("%H:%M:%S"), why))


threads, i = [], 0
while not os.path.exists(stop):
    t = threading.Thread(target=one, args=(i,))
    t.start()
    threads.append(t)
    i += 1
    time.sleep(0.1)
for t in threads:
    t.join()
done_at.sort()
gap = max((b - a for a, b in zip(done_at, done_at[1:])), default=None)
print(json.dumps({"ok": ok, "failed": failed, "errors": errors, "max_gap": gap}))
