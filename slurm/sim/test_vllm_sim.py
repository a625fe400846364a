"""Tests for the vLLM simulator (slurm/sim/vllm_sim.py). Standard library only.

Run from the repository root:
    python3 -m unittest slurm/sim/test_vllm_sim.py
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SIM_DIR = os.path.dirname(os.path.abspath(__file__))
SIM_PY = os.path.join(SIM_DIR, "vllm_sim.py")
BIN_VLLM = os.path.join(SIM_DIR, "bin", "vllm")
HOST = "127.0.0.1"
KEY = "sk-test-Zq8vX31kPm0aL"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Sim:
    """A simulator subprocess with its output captured in temporary files."""

    def __init__(self, cmd, env=None):
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("VLLM_") or k == "CUDA_VISIBLE_DEVICES":
                del e[k]
        e.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, env=e,
                                     stdin=subprocess.DEVNULL)

    def wait(self, timeout=15):
        return self.proc.wait(timeout=timeout)

    def output(self):
        res = []
        for f in (self.out, self.err):
            f.flush()
            f.seek(0)
            res.append(f.read().decode("utf-8", "replace"))
        return res

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()
        self.err.close()


def serve_cmd(port, *extra):
    return [BIN_VLLM, "serve", "Qwen/Qwen2.5-0.5B-Instruct", "--host", HOST,
            "--port", str(port)] + list(extra)


def request(port, method, path, body=None, key=None, timeout=10, headers=None):
    """Returns (status, headers, body bytes)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = "Bearer " + key
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def wait_healthy(port, proc=None, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("simulator exited early with %s" % proc.returncode)
        try:
            if request(port, "GET", "/health", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("simulator not healthy after %s s" % timeout)


# ---- a tiny JSON-schema validator (enough for the schemas below) ---------------------

def validate(inst, schema, root=None, path="$"):
    root = root if root is not None else schema
    if "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return validate(inst, node, root, path)
    if "const" in schema:
        assert inst == schema["const"], "%s: %r != const" % (path, inst)
    if "enum" in schema:
        assert inst in schema["enum"], "%s: %r not in enum" % (path, inst)
    if "anyOf" in schema:
        errs = []
        for sub in schema["anyOf"]:
            try:
                validate(inst, sub, root, path)
                break
            except AssertionError as e:
                errs.append(str(e))
        else:
            raise AssertionError("%s: no anyOf branch matched: %s" % (path, errs))
    t = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if t is not None:
        types = t if isinstance(t, list) else [t]
        assert any(checks[x](inst) for x in types), "%s: %r is not %s" % (path, inst, t)
    if isinstance(inst, dict):
        for r in schema.get("required", []):
            assert r in inst, "%s: missing required %r" % (path, r)
        for k, sub in schema.get("properties", {}).items():
            if k in inst:
                validate(inst[k], sub, root, path + "." + k)
    if isinstance(inst, list):
        if "minItems" in schema:
            assert len(inst) >= schema["minItems"], "%s: too few items" % path
        if "maxItems" in schema:
            assert len(inst) <= schema["maxItems"], "%s: too many items" % path
        if isinstance(schema.get("items"), dict):
            for i, v in enumerate(inst):
                validate(v, schema["items"], root, "%s[%d]" % (path, i))
    if isinstance(inst, str):
        if "minLength" in schema:
            assert len(inst) >= schema["minLength"], "%s: too short" % path
        if "maxLength" in schema:
            assert len(inst) <= schema["maxLength"], "%s: too long" % path
        if "pattern" in schema:
            assert re.search(schema["pattern"], inst), "%s: %r !~ pattern" % (path, inst)
    if isinstance(inst, (int, float)) and not isinstance(inst, bool):
        if "minimum" in schema:
            assert inst >= schema["minimum"], "%s: below minimum" % path
        if "maximum" in schema:
            assert inst <= schema["maximum"], "%s: above maximum" % path


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 30},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "active": {"type": "boolean"},
        "role": {"enum": ["admin", "user", "guest"]},
        "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
        "nickname": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "address": {"type": "object",
                    "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city", "zip"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 5},
        "kind": {"const": "person"},
    },
    "required": ["name", "age", "score", "active", "role", "code", "address", "tags", "kind"],
}

ITEMS = {
    "type": "array", "minItems": 2, "maxItems": 4,
    "items": {"$ref": "#/$defs/item"},
    "$defs": {"item": {"type": "object",
                       "properties": {"id": {"type": "integer"},
                                      "labels": {"type": "array", "items": {"type": "string"}}},
                       "required": ["id", "labels"]}},
}


class SharedServer(unittest.TestCase):
    """One simulator (bin/vllm serve form, with an API key) shared by many tests."""

    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.sim = Sim(serve_cmd(cls.port, "--served-model-name", "sim", "alias",
                                "--max-model-len=4096", "--dtype", "bfloat16",
                                "-tp", "1", "--enforce-eager", "--sim-token-delay", "0.01"),
                      env={"VLLM_API_KEY": KEY})
        wait_healthy(cls.port, cls.sim.proc)

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def post(self, path, body, key=KEY, **kw):
        status, headers, data = request(self.port, "POST", path, body, key=key, **kw)
        return status, headers, data

    def chat(self, body):
        status, _, data = self.post("/v1/chat/completions", dict({"model": "sim"}, **body))
        self.assertEqual(status, 200, data)
        return json.loads(data)

    def test_auth(self):
        status, headers, data = request(self.port, "GET", "/v1/models")
        self.assertEqual(status, 401)
        self.assertEqual(json.loads(data), {"error": "Unauthorized"})
        self.assertIn("application/json", headers["Content-Type"])
        status, _, data = request(self.port, "GET", "/v1/models", key="wrong-key")
        self.assertEqual(status, 401)
        status, _, _ = self.post("/v1/completions", {"prompt": "x"}, key=None)
        self.assertEqual(status, 401)
        self.assertEqual(request(self.port, "GET", "/v1/models", key=KEY)[0], 200)
        for path in ("/health", "/ping", "/version", "/metrics"):
            self.assertEqual(request(self.port, "GET", path)[0], 200, path)

    def test_version_and_models(self):
        status, _, data = request(self.port, "GET", "/version")
        v = json.loads(data)
        self.assertTrue(v["simulator"])
        self.assertIn("vllm-sim", v["version"])
        status, _, data = request(self.port, "GET", "/v1/models", key=KEY)
        models = json.loads(data)
        self.assertEqual(models["object"], "list")
        self.assertEqual([m["id"] for m in models["data"]], ["sim", "alias"])
        for m in models["data"]:
            self.assertEqual(m["owned_by"], "vllm-sim")
            self.assertEqual(m["root"], "Qwen/Qwen2.5-0.5B-Instruct")
            self.assertEqual(m["max_model_len"], 4096)

    def test_completion_deterministic(self):
        body = {"model": "sim", "prompt": "The capital of France is", "max_tokens": 7}
        a = json.loads(self.post("/v1/completions", body)[2])
        b = json.loads(self.post("/v1/completions", body)[2])
        self.assertEqual(a["object"], "text_completion")
        self.assertEqual(a["choices"][0]["text"], b["choices"][0]["text"])
        self.assertEqual(len(a["choices"][0]["text"].split()), a["usage"]["completion_tokens"])
        self.assertLessEqual(a["usage"]["completion_tokens"], 7)
        self.assertIn(a["choices"][0]["finish_reason"], ("stop", "length"))
        self.assertEqual(a["usage"]["total_tokens"],
                         a["usage"]["prompt_tokens"] + a["usage"]["completion_tokens"])
        c = json.loads(self.post("/v1/completions", dict(body, prompt="Something else"))[2])
        self.assertNotEqual(a["choices"][0]["text"], c["choices"][0]["text"])
        # default max_tokens 16, model defaults to the first served name, list prompts
        d = json.loads(self.post("/v1/completions", {"prompt": ["a b", "c d"]})[2])
        self.assertEqual(d["model"], "sim")
        self.assertEqual(len(d["choices"]), 2)
        for ch in d["choices"]:
            self.assertLessEqual(len(ch["text"].split()), 16)

    def test_chat_deterministic(self):
        msgs = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
        a = self.chat({"messages": msgs, "max_tokens": 12, "temperature": 0.9})
        b = self.chat({"messages": msgs, "max_tokens": 12, "temperature": 0.1})
        self.assertEqual(a["object"], "chat.completion")
        self.assertEqual(a["choices"][0]["message"]["role"], "assistant")
        self.assertEqual(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"])
        self.assertTrue(a["choices"][0]["message"]["content"])
        self.assertGreater(a["usage"]["prompt_tokens"], 0)
        alias = json.loads(self.post("/v1/chat/completions", {"model": "alias", "messages": msgs,
                                                              "max_tokens": 12})[2])
        self.assertEqual(alias["model"], "alias")

    def test_errors(self):
        status, _, data = self.post("/v1/chat/completions",
                                    {"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})
        self.assertEqual(status, 404)
        self.assertEqual(json.loads(data), {"object": "error",
                                            "message": "The model `gpt-4` does not exist.",
                                            "type": "NotFoundError", "param": None, "code": 404})
        status, _, data = self.post("/v1/chat/completions", b"{not json")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(data)["object"], "error")
        status, _, data = self.post("/v1/chat/completions", {"model": "sim"})
        self.assertEqual(status, 400)
        status, _, data = self.post("/v1/completions", {"model": "sim"})
        self.assertEqual(status, 400)
        status, _, data = request(self.port, "GET", "/no/such/path")
        self.assertEqual((status, json.loads(data)), (404, {"detail": "Not Found"}))

    def read_stream(self, path, body):
        """POST a streaming request; returns [(arrival time, data payload)]."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            conn.request("POST", path, body=json.dumps(body),
                         headers={"Authorization": "Bearer " + KEY,
                                  "Content-Type": "application/json"})
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers["Content-Type"].startswith("text/event-stream"))
            self.assertEqual(r.headers["Transfer-Encoding"], "chunked")
            events = []
            while True:
                line = r.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line.startswith("data: "):
                    events.append((time.monotonic(), line[6:]))
                    if line == "data: [DONE]":
                        r.read()
                        break
                else:
                    self.assertEqual(line, "")
            return events
        finally:
            conn.close()

    def test_streaming(self):
        body = {"model": "sim", "messages": [{"role": "user", "content": "Tell me a story"}],
                "max_tokens": 10, "stream": True, "stream_options": {"include_usage": True}}
        events = self.read_stream("/v1/chat/completions", body)
        self.assertEqual(events[-1][1], "[DONE]")
        chunks = [json.loads(e[1]) for e in events[:-1]]
        self.assertGreaterEqual(len(chunks), 4)
        self.assertTrue(all(c["object"] == "chat.completion.chunk" for c in chunks))
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertIn("usage", chunks[-1])
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1])
        full = self.chat(dict(body, stream=False))
        self.assertEqual(text, full["choices"][0]["message"]["content"])
        self.assertEqual(chunks[-1]["usage"]["completion_tokens"],
                         full["usage"]["completion_tokens"])
        # chunks arrive separately over time (token delay 0.01 s)
        self.assertGreater(events[-2][0] - events[1][0], 0.03)

        events = self.read_stream("/v1/completions", {"prompt": "Once upon a time",
                                                      "max_tokens": 5, "stream": True})
        self.assertEqual(events[-1][1], "[DONE]")
        chunks = [json.loads(e[1]) for e in events[:-1]]
        self.assertTrue(all(c["object"] == "text_completion" for c in chunks))
        self.assertGreaterEqual(len(chunks), 2)
        self.assertIsNotNone(chunks[-1]["choices"][0]["finish_reason"])

    def test_structured_json(self):
        for schema in (PERSON, ITEMS):
            for variant in ("guided_json", "guided_json_str", "response_format", "structured_outputs"):
                body = {"messages": [{"role": "user", "content": "Give me JSON " + variant}]}
                if variant == "guided_json":
                    body["guided_json"] = schema
                elif variant == "guided_json_str":
                    body["guided_json"] = json.dumps(schema)
                elif variant == "response_format":
                    body["response_format"] = {"type": "json_schema",
                                               "json_schema": {"name": "x", "schema": schema}}
                else:
                    body["structured_outputs"] = {"json": schema}
                r1 = self.chat(body)
                r2 = self.chat(body)
                text = r1["choices"][0]["message"]["content"]
                self.assertEqual(text, r2["choices"][0]["message"]["content"])
                validate(json.loads(text), schema)
        # json_object, completions endpoint, streaming with a schema
        r = self.chat({"messages": [{"role": "user", "content": "json"}],
                       "response_format": {"type": "json_object"}})
        self.assertIsInstance(json.loads(r["choices"][0]["message"]["content"]), dict)
        status, _, data = self.post("/v1/completions", {"prompt": "p", "guided_json": PERSON})
        validate(json.loads(json.loads(data)["choices"][0]["text"]), PERSON)
        events = self.read_stream("/v1/chat/completions", {
            "messages": [{"role": "user", "content": "s"}], "stream": True, "guided_json": PERSON})
        chunks = [json.loads(e[1]) for e in events[:-1]]
        self.assertGreater(len(chunks), 3)
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        validate(json.loads(text), PERSON)
        r = self.chat({"messages": [{"role": "user", "content": "c"}],
                       "guided_choice": ["yes", "no"]})
        self.assertIn(r["choices"][0]["message"]["content"], ("yes", "no"))

    def test_metrics(self):
        def scrape():
            status, headers, data = request(self.port, "GET", "/metrics")
            self.assertEqual(status, 200)
            self.assertTrue(headers["Content-Type"].startswith("text/plain"))
            values, types = {}, {}
            for line in data.decode().splitlines():
                if line.startswith("# TYPE "):
                    _, _, name, typ = line.split()
                    types[name] = typ
                elif line and not line.startswith("#"):
                    m = re.match(r'^([a-zA-Z_:][\w:]*)\{(.*)\} (\S+)$', line)
                    self.assertIsNotNone(m, line)
                    self.assertIn('model_name="sim"', m.group(2))
                    name = m.group(1)
                    values[name] = values.get(name, 0.0) + float(m.group(3))
            return values, types

        before, types = scrape()
        for name, typ in (("vllm:num_requests_running", "gauge"),
                          ("vllm:num_requests_waiting", "gauge"),
                          ("vllm:gpu_cache_usage_perc", "gauge"),
                          ("vllm:prompt_tokens_total", "counter"),
                          ("vllm:generation_tokens_total", "counter"),
                          ("vllm:request_success_total", "counter")):
            self.assertEqual(types.get(name), typ, name)
            self.assertIn(name, before)
        r = json.loads(self.post("/v1/completions", {"prompt": "one two three four",
                                                     "max_tokens": 6})[2])
        # a slow request in flight shows up as running
        holder = threading.Thread(target=self.post, args=("/v1/completions", {
            "prompt": "slow", "max_tokens": 60, "ignore_eos": True}))
        holder.start()
        time.sleep(0.2)
        during, _ = scrape()
        holder.join()
        after, _ = scrape()
        self.assertGreaterEqual(during["vllm:num_requests_running"], 1)
        self.assertGreater(during["vllm:gpu_cache_usage_perc"], 0)
        self.assertLessEqual(during["vllm:gpu_cache_usage_perc"], 1)
        self.assertGreaterEqual(after["vllm:prompt_tokens_total"] - before["vllm:prompt_tokens_total"],
                                r["usage"]["prompt_tokens"] + 1)
        self.assertGreaterEqual(after["vllm:generation_tokens_total"]
                                - before["vllm:generation_tokens_total"],
                                r["usage"]["completion_tokens"] + 60)
        self.assertGreaterEqual(after["vllm:request_success_total"]
                                - before["vllm:request_success_total"], 2)

    def test_concurrent_streams(self):
        n = 200
        results = [None] * n
        barrier = threading.Barrier(n, timeout=20)

        def worker(i):
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
                body = json.dumps({"model": "sim", "stream": True, "max_tokens": 8,
                                   "messages": [{"role": "user", "content": "hello %d" % i}]})
                barrier.wait()
                conn.request("POST", "/v1/chat/completions", body=body,
                             headers={"Authorization": "Bearer " + KEY,
                                      "Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read().decode()
                conn.close()
                results[i] = (r.status, data.rstrip().endswith("data: [DONE]"),
                              data.count("data: "))
            except Exception as e:  # noqa: BLE001
                results[i] = ("error", repr(e))

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 40
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        bad = [r for r in results if r is None or r[0] != 200 or not r[1] or r[2] < 3]
        self.assertEqual(bad, [], "%d of %d streams failed, e.g. %r" % (len(bad), n, bad[:3]))

    def test_zz_key_never_logged(self):
        # Runs last in this class (alphabetical); requests above sent the key and wrong keys.
        request(self.port, "GET", "/v1/models", key=KEY)
        time.sleep(0.2)
        out, err = self.sim.output()
        self.assertIn("vllm-sim", out + err)
        self.assertIn("Application startup complete.", err)
        self.assertRegex(out, r'"GET /v1/models HTTP/1.1" 200')
        self.assertNotIn(KEY, out + err)
        self.assertNotIn(KEY[:8], out + err)
        self.assertNotIn("Bearer", out + err)


class Lifecycle(unittest.TestCase):
    def setUp(self):
        self.sims = []

    def tearDown(self):
        for s in self.sims:
            s.stop()

    def start(self, cmd, env=None):
        s = Sim(cmd, env=env)
        self.sims.append(s)
        return s

    def test_refused_while_loading_then_healthy(self):
        port = free_port()
        t0 = time.monotonic()
        sim = self.start(serve_cmd(port), env={"VLLM_SIM_LOAD_SECONDS": "1"})
        time.sleep(0.3)
        with self.assertRaises(ConnectionRefusedError):
            request(port, "GET", "/health", timeout=2)
        wait_healthy(port, sim.proc)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        out, err = sim.output()
        self.assertIn("Loading safetensors checkpoint shards", out)
        self.assertIn("SIMULATOR", out)
        # SIGTERM: clean exit 0
        sim.proc.send_signal(signal.SIGTERM)
        self.assertEqual(sim.wait(10), 0)
        self.assertIn("Shutting down", sim.output()[1])

    def test_sigterm_stops_it_even_when_started_with_sigterm_blocked(self):
        # A parent's blocked mask is inherited across exec (a Swift test runner's threads block
        # nearly every signal); scancel's SIGTERM must still stop the server at once.
        port = free_port()
        blocked = lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        proc = subprocess.Popen(serve_cmd(port), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                preexec_fn=blocked)
        try:
            wait_healthy(port, proc)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=5), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
            err.close()

    def test_crash_after(self):
        port = free_port()
        sim = self.start(serve_cmd(port, "--sim-crash-after", "0.5"))
        wait_healthy(port, sim.proc)
        self.assertNotEqual(sim.wait(10), 0)
        self.assertIn("Engine loop has died", sim.output()[1])

    def test_unhealthy_after(self):
        port = free_port()
        sim = self.start(serve_cmd(port), env={"VLLM_SIM_UNHEALTHY_AFTER": "0.5"})
        wait_healthy(port, sim.proc)
        time.sleep(0.8)
        self.assertEqual(request(port, "GET", "/health")[0], 503)
        status, _, data = request(port, "POST", "/v1/completions", {"prompt": "x"})
        self.assertEqual(status, 500)
        self.assertEqual(json.loads(data)["code"], 500)
        self.assertIsNone(sim.proc.poll())

    def test_fail_startup(self):
        port = free_port()
        sim = self.start(serve_cmd(port, "--sim-fail-startup",
                                   "torch.OutOfMemoryError: CUDA out of memory (simulated)"))
        self.assertEqual(sim.wait(10), 1)
        err = sim.output()[1]
        self.assertIn("Traceback (most recent call last):", err)
        self.assertTrue(err.rstrip().endswith(
            "torch.OutOfMemoryError: CUDA out of memory (simulated)"), err)

    def test_port_in_use(self):
        blocker = socket.socket()
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind((HOST, 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        try:
            sim = self.start(serve_cmd(port))
            self.assertEqual(sim.wait(10), 1)
            self.assertIn("ERROR:    [Errno 98] error while attempting to bind on address "
                          "('127.0.0.1', %d): address already in use" % port, sim.output()[1])
        finally:
            blocker.close()

    def test_unknown_flag(self):
        sim = self.start(serve_cmd(free_port(), "--no-such-flag", "1"))
        self.assertEqual(sim.wait(10), 2)
        self.assertIn("unrecognized arguments", sim.output()[1])

    def test_too_many_gpus(self):
        sim = self.start(serve_cmd(free_port(), "--tensor-parallel-size", "2"),
                         env={"CUDA_VISIBLE_DEVICES": "0"})
        self.assertEqual(sim.wait(10), 1)
        self.assertIn("number of available GPUs (1)", sim.output()[1])

    def test_api_server_form_and_key_flag(self):
        port = free_port()
        env = {"PYTHONPATH": SIM_DIR, "VLLM_API_KEY": "env-key-loses"}
        sim = self.start([sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                          "--model", "meta-llama/Llama-3.1-8B-Instruct", "--host", HOST,
                          "--port=%d" % port, "--api-key", KEY, "--gpu-memory-utilization",
                          "0.9"], env=env)
        wait_healthy(port, sim.proc)
        self.assertEqual(request(port, "GET", "/v1/models", key="env-key-loses")[0], 401)
        status, _, data = request(port, "GET", "/v1/models", key=KEY)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(data)["data"][0]["id"], "meta-llama/Llama-3.1-8B-Instruct")
        status, _, data = request(port, "POST", "/v1/chat/completions",
                                  {"messages": [{"role": "user", "content": "hi"}]}, key=KEY)
        self.assertEqual(status, 200)
        out, err = sim.output()
        self.assertNotIn(KEY, out + err)
        self.assertNotIn("env-key-loses", out + err)

    def test_script_form(self):
        port = free_port()
        sim = self.start([sys.executable, SIM_PY, "serve", "m", "--host", HOST, "--port",
                          str(port), "--sim-token-delay", "0"])
        wait_healthy(port, sim.proc)
        status, _, data = request(port, "POST", "/v1/completions", {"prompt": "x", "model": "m"})
        self.assertEqual(status, 200)


if __name__ == "__main__":
    unittest.main()
