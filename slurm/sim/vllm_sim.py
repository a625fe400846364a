#!/usr/bin/env python3
"""vllm-sim: a SIMULATOR of vLLM's OpenAI-compatible server, for tests and demos.

It takes vLLM's command line (`vllm serve MODEL ...` or
`python -m vllm.entrypoints.openai.api_server --model MODEL ...`) and speaks the same HTTP
API, but it loads no model and needs no GPU: the generated text is synthetic and
deterministic (derived from a hash of the request). It says so in its startup log, in
`/version` and in `/v1/models` (owned_by "vllm-sim").

Python 3 standard library only. See README.md in this directory.
"""

import argparse
import hashlib
import hmac
import json
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SIM_VERSION = "0.0.0+vllm-sim"
DEFAULT_MAX_MODEL_LEN = 8192
DEFAULT_MAX_TOKENS = 16
MAX_BODY_BYTES = 64 * 1024 * 1024
ERRNO_ADDRINUSE_TEXT = "address already in use"

# --------------------------------------------------------------------------------------
# Logging (vLLM style on stdout, uvicorn style on stderr; access log on stdout)
# --------------------------------------------------------------------------------------

_log_lock = threading.Lock()


def _write(stream, line):
    with _log_lock:
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass


def vlog(level, where, msg, stream=None):
    """A vLLM-style log line: `INFO 05-06 12:34:56 [api_server.py:42] message`."""
    ts = time.strftime("%m-%d %H:%M:%S")
    _write(stream or sys.stdout, "%s %s [%s] %s" % (level, ts, where, msg))


def ulog(level, msg, stream=None):
    """A uvicorn-style log line: `INFO:     message` (level padded to 9 columns)."""
    _write(stream or sys.stderr, ("%s:" % level).ljust(10) + msg)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

# Flags accepted for compatibility and otherwise ignored (name -> takes a value?).
_IGNORED_VALUE_FLAGS = [
    "--dtype", "--gpu-memory-utilization", "--guided-decoding-backend", "--max-log-len",
    "--download-dir", "--max-num-batched-tokens", "--seed", "--chat-template",
    "--quantization", "--kv-cache-dtype", "--swap-space", "--limit-mm-per-prompt",
    "--tokenizer", "--revision", "--generation-config", "--structured-outputs-config",
    "--tokenizer-mode", "--load-format", "--block-size", "--cpu-offload-gb",
    "--distributed-executor-backend", "--tool-call-parser", "--reasoning-parser",
    "--config", "--hf-overrides", "--override-generation-config", "--compilation-config",
    "--speculative-config", "--max-seq-len-to-capture", "--response-role",
    "--root-path", "--code-revision", "--tokenizer-revision", "--data-parallel-size",
    "--max-loras", "--max-lora-rank", "--mm-processor-kwargs", "--rope-scaling",
    "--ssl-keyfile", "--ssl-certfile", "--lora-modules", "--allowed-origins",
    "--uvicorn-log-level",
]
_IGNORED_BOOL_FLAGS = [
    "--trust-remote-code", "--enforce-eager", "--enable-prefix-caching",
    "--disable-log-requests", "--enable-log-requests", "--disable-log-stats",
    "--enable-chunked-prefill", "--enable-auto-tool-choice", "--enable-lora",
    "--disable-custom-all-reduce", "--disable-frontend-multiprocessing",
    "--disable-fastapi-docs", "--enable-request-id-headers",
]


def _normalize_argv(argv):
    """Like vLLM's FlexibleArgumentParser: `--max_model_len` == `--max-model-len`."""
    out = []
    for a in argv:
        if a.startswith("--") and len(a) > 2:
            key, eq, val = a.partition("=")
            a = key.replace("_", "-") + eq + val
        out.append(a)
    return out


def build_parser(form):
    if form == "serve":
        p = argparse.ArgumentParser(
            prog="vllm serve", allow_abbrev=False,
            usage="vllm serve [model_tag] [options]",
            description="vllm-sim: simulated `vllm serve` (no GPU, no weights).")
        p.add_argument("model_tag", nargs="?", default=None,
                       help="model name or path (what vLLM would load)")
    else:
        p = argparse.ArgumentParser(
            prog="api_server.py", allow_abbrev=False,
            description="vllm-sim: simulated vLLM OpenAI-compatible API server.")
    p.add_argument("--model", default=None)
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None)
    p.add_argument("--served-model-name", nargs="+", default=None)
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    p.add_argument("--max-model-len", type=str, default=None)
    p.add_argument("--max-num-seqs", type=int, default=256)
    for f in _IGNORED_VALUE_FLAGS:
        if f == "--data-parallel-size":
            p.add_argument(f, "-dp", default=None)
        elif f == "--compilation-config":
            p.add_argument(f, "-O", default=None)
        else:
            p.add_argument(f, default=None)
    for f in _IGNORED_BOOL_FLAGS:
        p.add_argument(f, action=argparse.BooleanOptionalAction, default=None)
    # Simulator knobs (each also has an env var; the flag wins).
    p.add_argument("--sim-load-seconds", type=float, default=None,
                   help="seconds of simulated weight loading (not listening meanwhile); "
                        "env VLLM_SIM_LOAD_SECONDS, default 0")
    p.add_argument("--sim-fail-startup", default=None, metavar="MSG",
                   help="fail during startup with MSG; env VLLM_SIM_FAIL_STARTUP")
    p.add_argument("--sim-crash-after", type=float, default=None, metavar="N",
                   help="engine dies and the process exits 1 N s after serving starts; "
                        "env VLLM_SIM_CRASH_AFTER")
    p.add_argument("--sim-unhealthy-after", type=float, default=None, metavar="N",
                   help="after N s /health gives 503 and /v1/* 500, process stays up; "
                        "env VLLM_SIM_UNHEALTHY_AFTER")
    p.add_argument("--sim-token-delay", type=float, default=None, metavar="SECONDS",
                   help="delay per generated token; env VLLM_SIM_TOKEN_DELAY, default 0.02")
    return p


def _knob(parser, value, env, conv, default):
    if value is not None:
        return value
    raw = os.environ.get(env)
    if raw is None or raw.strip() == "":
        return default
    try:
        return conv(raw.strip())
    except ValueError:
        parser.error("environment variable %s has an invalid value: %r" % (env, raw))


def _parse_max_model_len(parser, raw):
    if raw is None:
        return None
    s = raw.strip().lower()
    mult = 1
    if s and s[-1] in "km":
        mult = 1000 if s[-1] == "k" else 1000000
        s = s[:-1]
    try:
        v = int(float(s) * mult)
    except ValueError:
        parser.error("argument --max-model-len: invalid value: %r" % raw)
    if v <= 0:
        parser.error("argument --max-model-len: must be positive")
    return v


def parse_args(argv, form):
    parser = build_parser(form)
    args = parser.parse_args(_normalize_argv(argv))
    model = None
    if form == "serve":
        model = args.model_tag or args.model
        if not model:
            parser.error("the following arguments are required: model_tag")
    else:
        model = args.model or "facebook/opt-125m"
    args.model = model
    args.served_names = list(args.served_model_name or [model])
    args.max_model_len_value = _parse_max_model_len(parser, args.max_model_len)
    if not (0 <= args.port <= 65535):
        parser.error("argument --port: %d is not a valid port" % args.port)
    if args.tensor_parallel_size < 1 or args.pipeline_parallel_size < 1:
        parser.error("--tensor-parallel-size and --pipeline-parallel-size must be >= 1")
    if args.max_num_seqs < 1:
        parser.error("argument --max-num-seqs: must be >= 1")
    args.load_seconds = _knob(parser, args.sim_load_seconds, "VLLM_SIM_LOAD_SECONDS", float, 0.0)
    args.fail_startup = _knob(parser, args.sim_fail_startup, "VLLM_SIM_FAIL_STARTUP", str, None)
    args.crash_after = _knob(parser, args.sim_crash_after, "VLLM_SIM_CRASH_AFTER", float, None)
    args.unhealthy_after = _knob(parser, args.sim_unhealthy_after, "VLLM_SIM_UNHEALTHY_AFTER",
                                 float, None)
    args.token_delay = _knob(parser, args.sim_token_delay, "VLLM_SIM_TOKEN_DELAY", float, 0.02)
    if args.api_key is None:
        args.api_key = os.environ.get("VLLM_API_KEY") or None
    lvl = (args.uvicorn_log_level or "info").lower()
    args.access_log = lvl in ("trace", "debug", "info")
    return args


# --------------------------------------------------------------------------------------
# Deterministic generation
# --------------------------------------------------------------------------------------

WORDS = (
    "the of and to in is that for it as with was on be by this are from at an which "
    "model server cluster node token batch cache memory tensor layer parallel request "
    "stream response latency throughput simulated answer question result value data "
    "system network queue worker job partition signal output input context sequence "
    "prefill decode kernel device attention weight block schedule engine prompt state "
    "quick brown fox jumps over lazy dog river mountain forest city light shadow time "
    "simple clear careful steady bright quiet small large early late first last next"
).split()


def _rng(*parts):
    h = hashlib.sha256()
    for p in parts:
        if not isinstance(p, (bytes, bytearray)):
            p = json.dumps(p, sort_keys=True, ensure_ascii=False, default=str).encode()
        h.update(p)
        h.update(b"\x00")
    return random.Random(int.from_bytes(h.digest()[:16], "big"))


def _words(rng, n):
    return [rng.choice(WORDS) for _ in range(n)]


# ---- tiny regex -> string generator (for trivial patterns; verified with re.fullmatch) --

_PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
_DIGITS = "0123456789"
_WORDCH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


class _RegexGen:
    def __init__(self, pattern, rng):
        self.p = pattern
        self.i = 0
        self.rng = rng

    def parse(self):
        node = self._alt()
        if self.i != len(self.p):
            raise ValueError("unsupported regex")
        return node

    def _peek(self):
        return self.p[self.i] if self.i < len(self.p) else None

    def _alt(self):
        alts = [self._seq()]
        while self._peek() == "|":
            self.i += 1
            alts.append(self._seq())
        return ("alt", alts)

    def _seq(self):
        items = []
        while self._peek() is not None and self._peek() not in "|)":
            atom = self._atom()
            lo, hi = self._quant()
            items.append(("rep", atom, lo, hi))
        return ("seq", items)

    def _quant(self):
        c = self._peek()
        lo, hi = 1, 1
        if c == "*":
            lo, hi = 0, None
            self.i += 1
        elif c == "+":
            lo, hi = 1, None
            self.i += 1
        elif c == "?":
            lo, hi = 0, 1
            self.i += 1
        elif c == "{":
            m = re.match(r"\{(\d*)(,?)(\d*)\}", self.p[self.i:])
            if not m:
                raise ValueError("bad quantifier")
            self.i += m.end()
            lo = int(m.group(1) or 0)
            hi = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
        else:
            return lo, hi
        if self._peek() in ("?", "+"):
            self.i += 1
        return lo, hi

    def _escape_set(self, c):
        return {"d": list(_DIGITS), "w": list(_WORDCH), "s": [" "],
                "D": [x for x in _PRINTABLE if x not in _DIGITS],
                "W": [x for x in _PRINTABLE if x not in _WORDCH],
                "S": [x for x in _PRINTABLE if x != " "],
                "n": ["\n"], "t": ["\t"], "r": ["\r"]}.get(c, [c])

    def _atom(self):
        c = self._peek()
        if c == "(":
            self.i += 1
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self._peek() == "?":
                m = re.match(r"\?P<\w+>", self.p[self.i:])
                if not m:
                    raise ValueError("unsupported group")
                self.i += m.end()
            node = self._alt()
            if self._peek() != ")":
                raise ValueError("unbalanced")
            self.i += 1
            return node
        if c == "[":
            return self._class()
        if c == "\\":
            self.i += 2
            if self.i > len(self.p):
                raise ValueError("bad escape")
            e = self.p[self.i - 1]
            if e in "bBAZz":
                return ("chars", [""])
            return ("chars", self._escape_set(e))
        if c in "^$":
            self.i += 1
            return ("chars", [""])
        if c == ".":
            self.i += 1
            return ("chars", [x for x in _PRINTABLE if x != "\n"])
        if c in "*+?{":
            raise ValueError("nothing to repeat")
        self.i += 1
        return ("chars", [c])

    def _class(self):
        self.i += 1
        neg = False
        if self._peek() == "^":
            neg = True
            self.i += 1
        chars = []
        first = True
        while True:
            c = self._peek()
            if c is None:
                raise ValueError("unterminated class")
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "\\":
                e = self.p[self.i + 1]
                self.i += 2
                chars.extend(self._escape_set(e))
                continue
            self.i += 1
            if self._peek() == "-" and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                end = self.p[self.i + 1]
                self.i += 2
                chars.extend(chr(x) for x in range(ord(c), ord(end) + 1))
            else:
                chars.append(c)
        if neg:
            chars = [x for x in _PRINTABLE if x not in set(chars)]
        if not chars:
            raise ValueError("empty class")
        return ("chars", chars)

    def gen(self, node):
        kind = node[0]
        if kind == "alt":
            return self.gen(self.rng.choice(node[1]))
        if kind == "seq":
            return "".join(self.gen(n) for n in node[1])
        if kind == "rep":
            _, atom, lo, hi = node
            n = max(lo, 3 if hi is None else min(hi, 3))
            return "".join(self.gen(atom) for _ in range(n))
        if kind == "chars":
            return self.rng.choice(node[1])
        raise ValueError(kind)


def regex_string(pattern, rng):
    """A string fully matching `pattern`, or None if the pattern is not simple enough."""
    try:
        g = _RegexGen(pattern, rng)
        s = g.gen(g.parse())
        if re.fullmatch(pattern, s):
            return s
    except (ValueError, IndexError, re.error, RecursionError):
        pass
    return None


# ---- JSON schema -> instance --------------------------------------------------------

def _resolve_ref(ref, root):
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    node = root
    for part in ref[1:].split("/"):
        if part == "":
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def _merge_all_of(schema, root):
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for sub in schema.get("allOf") or []:
        if isinstance(sub, dict) and "$ref" in sub:
            sub = _resolve_ref(sub["$ref"], root)
        if not isinstance(sub, dict):
            continue
        if "allOf" in sub:
            sub = _merge_all_of(sub, root)
        for k, v in sub.items():
            if k == "properties" and isinstance(v, dict):
                merged.setdefault("properties", {})
                merged["properties"] = dict(merged["properties"], **v)
            elif k == "required" and isinstance(v, list):
                merged["required"] = list(dict.fromkeys(list(merged.get("required", [])) + v))
            else:
                merged.setdefault(k, v)
    return merged


_FORMATS = {
    "date": "2024-05-17", "date-time": "2024-05-17T12:34:56Z", "time": "12:34:56",
    "email": "user@example.com", "uri": "https://example.com/sim", "url": "https://example.com/sim",
    "hostname": "node001.example.com", "ipv4": "10.0.0.1", "ipv6": "fe80::1",
    "uuid": "123e4567-e89b-42d3-a456-426614174000", "duration": "PT1H",
}


def _gen_string(s, rng):
    lo = s.get("minLength", 0) if isinstance(s.get("minLength"), int) else 0
    hi = s.get("maxLength") if isinstance(s.get("maxLength"), int) else None
    fmt = s.get("format")
    if isinstance(s.get("pattern"), str):
        v = regex_string(s["pattern"], rng)
        if v is not None and len(v) >= lo and (hi is None or len(v) <= hi):
            return v
    if fmt in _FORMATS and len(_FORMATS[fmt]) >= lo and (hi is None or len(_FORMATS[fmt]) <= hi):
        return _FORMATS[fmt]
    v = " ".join(_words(rng, rng.randint(1, 3)))
    while len(v) < lo:
        v += " " + rng.choice(WORDS)
    if len(v) < lo:
        v += "x" * (lo - len(v))
    if hi is not None and len(v) > hi:
        v = v[:hi].rstrip() if len(v[:hi].rstrip()) >= lo else v[:hi]
    return v


def _num_bounds(s, integer):
    lo = s.get("minimum")
    hi = s.get("maximum")
    xlo = s.get("exclusiveMinimum")
    xhi = s.get("exclusiveMaximum")
    step = 1 if integer else 0.01
    if isinstance(xlo, bool):  # draft 4
        if xlo and lo is not None:
            lo = lo + step
    elif isinstance(xlo, (int, float)):
        lo = xlo + step if lo is None else max(lo, xlo + step)
    if isinstance(xhi, bool):
        if xhi and hi is not None:
            hi = hi - step
    elif isinstance(xhi, (int, float)):
        hi = xhi - step if hi is None else min(hi, xhi - step)
    if lo is None and hi is None:
        lo, hi = 0, 100
    elif lo is None:
        lo = hi - 100
    elif hi is None:
        hi = lo + 100
    return lo, hi


def _gen_number(s, rng, integer):
    lo, hi = _num_bounds(s, integer)
    mult = s.get("multipleOf")
    if integer:
        lo, hi = math.ceil(lo), math.floor(hi)
        if hi < lo:
            return int(lo)
        if isinstance(mult, (int, float)) and mult > 0 and float(mult).is_integer():
            m = int(mult)
            first = -(-lo // m) * m
            if first <= hi:
                k = (hi - first) // m
                return int(first + m * rng.randint(0, min(k, 50)))
        return rng.randint(lo, hi)
    if hi < lo:
        return float(lo)
    if isinstance(mult, (int, float)) and mult > 0:
        first = math.ceil(lo / mult)
        last = math.floor(hi / mult)
        if first <= last:
            v = mult * rng.randint(first, min(last, first + 50))
            return int(v) if float(v).is_integer() and isinstance(mult, int) else v
    v = round(rng.uniform(lo, hi), 2)
    if v < lo or v > hi:
        v = float(lo)
    return v


def gen_instance(schema, root, rng, depth=0):
    if schema is True or schema is None or schema == {}:
        return " ".join(_words(rng, 2))
    if schema is False or not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        target = _resolve_ref(schema["$ref"], root)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = dict(target, **rest) if isinstance(target, dict) else rest
        if depth > 40:
            return None
    if "allOf" in schema:
        schema = _merge_all_of(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            first = schema[key][0]
            if isinstance(first, dict):
                if "$ref" in first:
                    first = _resolve_ref(first["$ref"], root)
                base = dict(base, **first) if isinstance(first, dict) else base
            return gen_instance(base, root, rng, depth + 1)
    t = schema.get("type")
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        t = non_null[0] if non_null else "null"
    if t is None:
        if "properties" in schema or "required" in schema:
            t = "object"
        elif "items" in schema or "prefixItems" in schema:
            t = "array"
        elif any(k in schema for k in ("minimum", "maximum")):
            t = "number"
        else:
            t = "string"
    if t == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        out = {}
        shallow = depth > 6
        for name, sub in props.items():
            if shallow and name not in required:
                continue
            out[name] = gen_instance(sub, root, rng, depth + 1)
        for name in required:
            if name not in out:
                ap = schema.get("additionalProperties")
                out[name] = gen_instance(ap if isinstance(ap, dict) else {}, root, rng, depth + 1)
        minp = schema.get("minProperties")
        ap = schema.get("additionalProperties", True)
        if isinstance(minp, int) and ap is not False:
            i = 1
            while len(out) < minp:
                out.setdefault("key%d" % i, gen_instance(ap if isinstance(ap, dict) else {},
                                                        root, rng, depth + 1))
                i += 1
        return out
    if t == "array":
        lo = schema.get("minItems", 0) if isinstance(schema.get("minItems"), int) else 0
        hi = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
        n = lo if depth > 6 else max(lo, 2 if hi is None else min(hi, 2))
        prefix = schema.get("prefixItems")
        items = schema.get("items", {})
        if isinstance(items, list):  # draft 4 tuple form
            prefix, items = items, schema.get("additionalItems", {})
        out = []
        for i in range(n):
            if isinstance(prefix, list) and i < len(prefix):
                sub = prefix[i]
            else:
                sub = items if isinstance(items, dict) else {}
            v = gen_instance(sub, root, rng, depth + 1)
            if schema.get("uniqueItems"):
                tries = 0
                while v in out and tries < 20:
                    v = gen_instance(sub, root, rng, depth + 1)
                    tries += 1
            out.append(v)
        if isinstance(prefix, list) and len(prefix) > n and (hi is None or len(prefix) <= hi):
            for sub in prefix[n:]:
                out.append(gen_instance(sub, root, rng, depth + 1))
        return out
    if t == "string":
        return _gen_string(schema, rng)
    if t == "integer":
        return _gen_number(schema, rng, True)
    if t == "number":
        return _gen_number(schema, rng, False)
    if t == "boolean":
        return rng.random() < 0.5
    if t == "null":
        return None
    return " ".join(_words(rng, 2))


# ---- request -> output --------------------------------------------------------------

class BadRequest(Exception):
    def __init__(self, message, code=400, etype="BadRequestError", param=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.etype = etype
        self.param = param


def structured_spec(req):
    """Return ("json", schema) / ("choice", list) / ("regex", str) / None."""
    def load(v, what):
        if isinstance(v, str):
            try:
                return json.loads(v)
            except ValueError:
                raise BadRequest("%s is not a valid JSON schema" % what)
        return v

    so = req.get("structured_outputs")
    if isinstance(so, dict):
        if so.get("json") is not None:
            return ("json", load(so["json"], "structured_outputs.json"))
        if so.get("json_object"):
            return ("json", {"type": "object"})
        if isinstance(so.get("choice"), list) and so["choice"]:
            return ("choice", so["choice"])
        if isinstance(so.get("regex"), str):
            return ("regex", so["regex"])
    if req.get("guided_json") is not None:
        return ("json", load(req["guided_json"], "guided_json"))
    if isinstance(req.get("guided_choice"), list) and req["guided_choice"]:
        return ("choice", req["guided_choice"])
    if isinstance(req.get("guided_regex"), str):
        return ("regex", req["guided_regex"])
    rf = req.get("response_format")
    if isinstance(rf, dict):
        t = rf.get("type")
        if t == "json_schema":
            js = rf.get("json_schema") or {}
            schema = js.get("schema", js.get("json_schema")) if isinstance(js, dict) else None
            if schema is None:
                raise BadRequest("response_format.json_schema.schema is required")
            return ("json", load(schema, "response_format.json_schema.schema"))
        if t == "json_object":
            return ("json", {"type": "object"})
        if t not in (None, "text"):
            raise BadRequest("Unknown response_format type: %r" % (t,))
    return None


def _json_object_default(rng):
    return {"answer": " ".join(_words(rng, 4)), "confidence": round(rng.uniform(0, 1), 2),
            "simulated": True}


def generate(seed_obj, choice_index, max_tokens, spec, stop, ignore_eos):
    """Return (pieces, finish_reason, stop_reason). Concatenated pieces = the output text.

    Plain text: one piece per word. Structured: the JSON text in pieces of 4 characters.
    `max_tokens` None means "no limit" (only used for structured output without an
    explicit max_tokens).
    """
    rng = _rng("vllm-sim", seed_obj, choice_index, spec)
    if spec is not None:
        kind, val = spec
        if kind == "json":
            if val == {"type": "object"}:
                obj = _json_object_default(rng)
            else:
                obj = gen_instance(val, val, rng)
            text = json.dumps(obj, ensure_ascii=False)
        elif kind == "choice":
            text = str(rng.choice(val))
        else:
            text = regex_string(val, rng)
            if text is None:
                text = " ".join(_words(rng, 3))
        pieces = [text[i:i + 4] for i in range(0, len(text), 4)] or [""]
        if max_tokens is not None and len(pieces) > max_tokens:
            return pieces[:max_tokens], "length", None
        return pieces, "stop", None
    natural = 8 + rng.randint(0, 40)
    n = max_tokens if (ignore_eos or max_tokens < natural) else natural
    words = _words(rng, n)
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    finish = "length" if n == max_tokens and (ignore_eos or max_tokens < natural) else "stop"
    stops = [stop] if isinstance(stop, str) else [s for s in (stop or []) if isinstance(s, str)]
    stops = [s for s in stops if s]
    if stops:
        text = ""
        for i, p in enumerate(pieces):
            cand = text + p
            hit = min(((cand.find(s), s) for s in stops if s in cand), default=None)
            if hit is not None:
                cut = cand[:hit[0]]
                kept = pieces[:i] + ([cut[len(text):]] if len(cut) > len(text) else [])
                return kept, "stop", hit[1]
            text = cand
    return pieces, finish, None


def count_words(text):
    return len(text.split())


# --------------------------------------------------------------------------------------
# Server state and metrics
# --------------------------------------------------------------------------------------

class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(args.max_num_seqs)
        self.running = 0
        self.waiting = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = {"stop": 0, "length": 0, "abort": 0}
        self.unhealthy = False
        self.first_health_logged = False
        self.created = int(time.time())
        self.started = time.time()
        self.max_model_len = args.max_model_len_value or DEFAULT_MAX_MODEL_LEN
        # for the periodic stats log
        self._last_stats = (time.monotonic(), 0, 0)

    def metrics_text(self):
        name = self.args.served_names[0].replace("\\", "\\\\").replace('"', '\\"')
        lbl = 'model_name="%s"' % name
        with self.lock:
            running, waiting = self.running, self.waiting
            pt, gt = self.prompt_tokens, self.generation_tokens
            succ = dict(self.success)
        usage = min(1.0, running / float(self.args.max_num_seqs))
        out = []

        def metric(mname, mtype, help_, samples):
            out.append("# HELP %s %s" % (mname, help_))
            out.append("# TYPE %s %s" % (mname, mtype))
            for labels, value in samples:
                out.append("%s{%s} %s" % (mname, labels, float(value)))

        metric("vllm:num_requests_running", "gauge",
               "Number of requests in model execution batches.", [(lbl, running)])
        metric("vllm:num_requests_waiting", "gauge",
               "Number of requests waiting to be processed.", [(lbl, waiting)])
        metric("vllm:gpu_cache_usage_perc", "gauge",
               "GPU KV-cache usage. 1 means 100 percent usage.", [(lbl, usage)])
        metric("vllm:kv_cache_usage_perc", "gauge",
               "KV-cache usage. 1 means 100 percent usage.", [(lbl, usage)])
        metric("vllm:prompt_tokens_total", "counter",
               "Number of prefill tokens processed.", [(lbl, pt)])
        metric("vllm:generation_tokens_total", "counter",
               "Number of generation tokens processed.", [(lbl, gt)])
        metric("vllm:request_success_total", "counter",
               "Count of successfully processed requests.",
               [('%s,finished_reason="%s"' % (lbl, r), succ[r]) for r in ("stop", "length", "abort")])
        out.append("# HELP vllm_sim_info vllm-sim simulator marker (this is not real vLLM).")
        out.append("# TYPE vllm_sim_info gauge")
        out.append('vllm_sim_info{%s,version="%s"} 1.0' % (lbl, SIM_VERSION))
        return "\n".join(out) + "\n"

    def stats_line(self):
        now = time.monotonic()
        with self.lock:
            t0, pt0, gt0 = self._last_stats
            pt, gt = self.prompt_tokens, self.generation_tokens
            running, waiting = self.running, self.waiting
            self._last_stats = (now, pt, gt)
        if pt == pt0 and gt == gt0 and running == 0 and waiting == 0:
            return None
        dt = max(now - t0, 1e-6)
        return ("Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s, "
                "Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%% (simulated)"
                % ((pt - pt0) / dt, (gt - gt0) / dt, running, waiting,
                   100.0 * min(1.0, running / float(self.args.max_num_seqs))))


# --------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------

class ClientGone(Exception):
    pass


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    allow_reuse_port = False
    request_queue_size = 1024
    ssl_context = None

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ClientGone)):
            return  # client went away: not worth a traceback
        vlog("ERROR", "api_server.py:1", "vllm-sim: unhandled error serving %s: %r"
             % (client_address[0], exc), stream=sys.stderr)

    def server_bind(self):
        # SO_REUSEADDR like uvicorn (TIME_WAIT does not block), never SO_REUSEPORT.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        # Skip HTTPServer's getfqdn() (can stall on hosts without DNS).
        self.server_name = str(self.server_address[0])
        self.server_port = self.server_address[1]


ROUTES = {
    "/health": {"GET"}, "/ping": {"GET", "POST"}, "/version": {"GET"}, "/metrics": {"GET"},
    "/v1/models": {"GET"}, "/v1/completions": {"POST"}, "/v1/chat/completions": {"POST"},
}


def make_handler(state):
    args = state.args
    key_bytes = ("Bearer " + args.api_key).encode() if args.api_key else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 600  # idle keep-alive connections

        def setup(self):
            super().setup()
            try:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

        def version_string(self):
            return "uvicorn"

        def log_message(self, fmt, *a):  # BaseHTTPRequestHandler's own logging: off
            pass

        def log_request(self, code="-", size="-"):
            if not args.access_log:
                return
            try:
                code = int(code)
                phrase = self.responses.get(code, ("",))[0]
            except (TypeError, ValueError):
                phrase = ""
            path = urlsplit(getattr(self, "path", "") or "").path
            client = self.client_address[0] if self.client_address else "-"
            cport = self.client_address[1] if self.client_address and len(self.client_address) > 1 else 0
            ulog("INFO", '%s:%s - "%s %s %s" %s %s' % (
                client, cport, self.command, path, self.request_version, code, phrase),
                stream=sys.stdout)

        # ---- plumbing ------------------------------------------------------------
        def _read_body(self):
            te = (self.headers.get("Transfer-Encoding") or "").lower()
            if "chunked" in te:
                data = bytearray()
                while True:
                    line = self.rfile.readline(65537)
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    data += self.rfile.read(size)
                    self.rfile.readline(65537)
                    if len(data) > MAX_BODY_BYTES:
                        raise BadRequest("request body too large", code=413)
                return bytes(data)
            n = self.headers.get("Content-Length")
            if not n:
                return b""
            n = int(n)
            if n > MAX_BODY_BYTES:
                self.close_connection = True
                raise BadRequest("request body too large", code=413)
            return self.rfile.read(n)

        def _send(self, code, body=b"", ctype="application/json", extra=None):
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            elif isinstance(body, str):
                body = body.encode()
            self.send_response(code)
            if body or ctype != "application/json":
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, code, message, etype, param=None):
            self._send(code, {"object": "error", "message": message, "type": etype,
                              "param": param, "code": code})

        def _chunk(self, data):
            if isinstance(data, str):
                data = data.encode()
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            except (BrokenPipeError, ConnectionResetError, OSError):
                raise ClientGone()

        # ---- dispatch ------------------------------------------------------------
        def do_GET(self):
            self._dispatch()

        def do_POST(self):
            self._dispatch()

        def do_PUT(self):
            self._dispatch()

        def do_DELETE(self):
            self._dispatch()

        def do_PATCH(self):
            self._dispatch()

        def do_OPTIONS(self):
            self._dispatch()

        def do_HEAD(self):
            self._dispatch()

        def _dispatch(self):
            try:
                try:
                    body = self._read_body()
                except BadRequest as e:
                    return self._error(e.code, e.message, e.etype)
                except (ValueError, OSError):
                    self.close_connection = True
                    return self._error(400, "could not read the request body", "BadRequestError")
                path = urlsplit(self.path).path
                method = self.command
                if path.startswith("/v1") and method != "OPTIONS" and key_bytes is not None:
                    got = (self.headers.get("Authorization") or "").encode("latin-1", "replace")
                    if not hmac.compare_digest(got, key_bytes):
                        return self._send(401, {"error": "Unauthorized"})
                allowed = ROUTES.get(path)
                if allowed is None:
                    return self._send(404, {"detail": "Not Found"})
                if method not in allowed:
                    if method == "HEAD" and "GET" in allowed:
                        pass
                    else:
                        return self._send(405, {"detail": "Method Not Allowed"},
                                          extra={"Allow": ", ".join(sorted(allowed))})
                if path in ("/health", "/ping"):
                    if path == "/health" and not state.unhealthy and not state.first_health_logged:
                        # For benchmarks: when the server first reported healthy (epoch seconds).
                        state.first_health_logged = True
                        vlog("INFO", "api_server.py", "vllm-sim: first /health 200 at %.6f" % time.time())
                    return self._send(503 if state.unhealthy else 200, b"")
                if path == "/version":
                    return self._send(200, {"version": SIM_VERSION, "simulator": True})
                if path == "/metrics":
                    return self._send(200, state.metrics_text(),
                                      ctype="text/plain; version=0.0.4; charset=utf-8")
                if state.unhealthy:
                    return self._error(500, "EngineCore encountered an issue (vllm-sim: "
                                            "simulated dead engine). See stack trace for the root "
                                            "cause.", "InternalServerError")
                if path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [
                        {"id": n, "object": "model", "created": state.created,
                         "owned_by": "vllm-sim", "root": args.model, "parent": None,
                         "max_model_len": state.max_model_len, "permission": []}
                        for n in args.served_names]})
                try:
                    req = json.loads(body.decode("utf-8")) if body else None
                except (ValueError, UnicodeDecodeError) as e:
                    return self._error(400, "JSON decode error: %s" % e, "BadRequestError")
                if not isinstance(req, dict):
                    return self._error(400, "The request body must be a JSON object.",
                                       "BadRequestError")
                try:
                    self._generate(req, chat=(path == "/v1/chat/completions"))
                except BadRequest as e:
                    self._error(e.code, e.message, e.etype, e.param)
            except ClientGone:
                self.close_connection = True
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            except Exception as e:  # a simulator bug must not look like a network failure
                self.close_connection = True
                vlog("ERROR", "api_server.py:1", "vllm-sim internal error: %r" % (e,),
                     stream=sys.stderr)
                try:
                    self._error(500, "vllm-sim internal error: %s" % type(e).__name__,
                                "InternalServerError")
                except Exception:  # noqa: BLE001 (headers may already be sent)
                    pass

        # ---- completions -----------------------------------------------------------
        def _generate(self, req, chat):
            model = req.get("model")
            if model is None:
                model = args.served_names[0]
            if not isinstance(model, str) or model not in args.served_names:
                raise BadRequest("The model `%s` does not exist." % (model,), code=404,
                                 etype="NotFoundError")
            stream = req.get("stream", False)
            if not isinstance(stream, bool):
                raise BadRequest("stream must be a boolean", param="stream")
            n = req.get("n", 1)
            if not isinstance(n, int) or isinstance(n, bool) or n < 1 or n > 128:
                raise BadRequest("n must be an integer between 1 and 128", param="n")
            spec = structured_spec(req)
            mt_key = "max_tokens"
            mt = req.get("max_tokens")
            if chat and mt is None and req.get("max_completion_tokens") is not None:
                mt, mt_key = req.get("max_completion_tokens"), "max_completion_tokens"
            explicit = mt is not None
            if explicit and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
                raise BadRequest("%s must be at least 1, got %s." % (mt_key, mt), param=mt_key)

            if chat:
                prompts = [self._chat_prompt(req)]
            else:
                prompts = self._completion_prompts(req)

            choices_plan = []  # (index, prompt_tokens, pieces, finish, stop_reason)
            total_prompt = 0
            for pi, (seed_obj, ptoks, echo_text) in enumerate(prompts):
                if explicit:
                    limit = mt
                elif spec is not None:
                    limit = None
                else:
                    limit = DEFAULT_MAX_TOKENS
                want = limit if limit is not None else 0
                if ptoks + want > state.max_model_len:
                    raise BadRequest(
                        "This model's maximum context length is %d tokens. However, you requested "
                        "%d tokens (%d in the messages, %d in the completion). Please reduce the "
                        "length of the messages or completion." % (
                            state.max_model_len, ptoks + want, ptoks, want))
                if limit is None:
                    limit = max(1, state.max_model_len - ptoks)
                total_prompt += ptoks
                for j in range(n):
                    pieces, finish, stop_reason = generate(
                        seed_obj, j, limit, spec, req.get("stop"), bool(req.get("ignore_eos")))
                    if echo_text is not None and pieces:
                        pieces = [echo_text + pieces[0]] + pieces[1:]
                    choices_plan.append((pi * n + j, pieces, finish, stop_reason))

            rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
            created = int(time.time())
            gen_tokens = sum(len(c[1]) for c in choices_plan)
            usage = {"prompt_tokens": total_prompt, "total_tokens": total_prompt + gen_tokens,
                     "completion_tokens": gen_tokens, "prompt_tokens_details": None}
            if args.enable_log_requests:
                vlog("INFO", "logger.py:43", "Received request %s: prompt_tokens=%d, max_tokens=%s, "
                     "stream=%s (prompt not logged by vllm-sim)" % (rid, total_prompt, mt, stream))

            with state.lock:
                state.waiting += 1
            acquired = False
            produced = 0
            ok = False
            try:
                state.slots.acquire()
                acquired = True
                with state.lock:
                    state.waiting -= 1
                    state.running += 1
                if stream:
                    produced = self._stream(req, chat, rid, created, model, choices_plan, usage)
                else:
                    if args.token_delay > 0:
                        steps = max((len(c[1]) for c in choices_plan), default=0)
                        time.sleep(args.token_delay * steps)
                    produced = gen_tokens
                    self._send(200, self._full_response(chat, rid, created, model,
                                                        choices_plan, usage))
                ok = True
            finally:
                with state.lock:
                    if acquired:
                        state.running -= 1
                    else:
                        state.waiting -= 1
                    state.generation_tokens += produced
                    if ok:
                        state.prompt_tokens += total_prompt
                        for c in choices_plan:
                            state.success[c[2]] = state.success.get(c[2], 0) + 1
                    else:
                        state.prompt_tokens += total_prompt if produced else 0
                        state.success["abort"] += 1
                if acquired:
                    state.slots.release()

        def _chat_prompt(self, req):
            msgs = req.get("messages")
            if not isinstance(msgs, list) or not msgs:
                raise BadRequest("messages: field required (a non-empty list)", param="messages")
            ptoks = 0
            norm = []
            images = 0
            for i, m in enumerate(msgs):
                if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                    raise BadRequest("messages[%d]: each message needs a string 'role'" % i,
                                     param="messages")
                content = m.get("content")
                parts = []
                if content is None:
                    pass
                elif isinstance(content, str):
                    parts.append(content)
                    ptoks += count_words(content)
                elif isinstance(content, list):
                    for part in content:
                        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                            raise BadRequest("messages[%d].content: invalid content part" % i,
                                             param="messages")
                        pt = part["type"]
                        if pt == "text":
                            txt = part.get("text")
                            if not isinstance(txt, str):
                                raise BadRequest("messages[%d].content: text part needs 'text'"
                                                 % i, param="messages")
                            parts.append(txt)
                            ptoks += count_words(txt)
                        elif pt in ("image_url", "input_image"):
                            iu = part.get("image_url")
                            url = iu.get("url") if isinstance(iu, dict) else iu
                            if not isinstance(url, str) or not url:
                                raise BadRequest("messages[%d].content: image_url part needs "
                                                 "'image_url.url'" % i, param="messages")
                            images += 1
                            ptoks += 64  # pretend an image costs 64 tokens
                            parts.append({"image": hashlib.sha256(url.encode()).hexdigest()})
                        else:
                            parts.append({pt: part.get(pt)})
                            ptoks += 8
                else:
                    raise BadRequest("messages[%d].content must be a string or a list" % i,
                                     param="messages")
                ptoks += 4  # chat template overhead per message
                norm.append([m["role"], parts])
            self._check_mm_limit(images)
            return (("chat", norm), max(1, ptoks), None)

        def _check_mm_limit(self, images):
            raw = args.limit_mm_per_prompt
            if not raw or not images:
                return
            limit = None
            try:
                v = json.loads(raw)
                if isinstance(v, dict):
                    limit = v.get("image")
            except ValueError:
                m = re.search(r"image=(\d+)", raw)
                limit = int(m.group(1)) if m else None
            if isinstance(limit, int) and images > limit:
                raise BadRequest("At most %d image(s) may be provided in one request." % limit)

        def _completion_prompts(self, req):
            if "prompt" not in req:
                raise BadRequest("prompt: field required", param="prompt")
            p = req["prompt"]
            echo = bool(req.get("echo"))
            out = []

            def add(item):
                if isinstance(item, str):
                    out.append((("text", item), max(1, count_words(item)), item if echo else None))
                elif isinstance(item, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                                    for x in item) and item:
                    out.append((("ids", item), len(item), None))
                else:
                    raise BadRequest("prompt must be a string, a list of strings, or token ids",
                                     param="prompt")

            if isinstance(p, list) and p and all(isinstance(x, int) and not isinstance(x, bool)
                                                 for x in p):
                add(p)
            elif isinstance(p, list) and p:
                for item in p:
                    add(item)
            else:
                add(p)
            return out

        def _full_response(self, chat, rid, created, model, plan, usage):
            choices = []
            for idx, pieces, finish, stop_reason in plan:
                text = "".join(pieces)
                if chat:
                    choices.append({"index": idx, "message": {
                        "role": "assistant", "content": text, "tool_calls": [],
                        "reasoning_content": None}, "logprobs": None,
                        "finish_reason": finish, "stop_reason": stop_reason})
                else:
                    choices.append({"index": idx, "text": text, "logprobs": None,
                                    "finish_reason": finish, "stop_reason": stop_reason,
                                    "prompt_logprobs": None})
            return {"id": rid, "object": "chat.completion" if chat else "text_completion",
                    "created": created, "model": model, "choices": choices, "usage": usage,
                    "system_fingerprint": None}

        def _stream(self, req, chat, rid, created, model, plan, usage):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            so = req.get("stream_options")
            include_usage = isinstance(so, dict) and bool(so.get("include_usage"))
            obj = "chat.completion.chunk" if chat else "text_completion"
            produced = 0

            def event(choices, usage_=None):
                d = {"id": rid, "object": obj, "created": created, "model": model,
                     "choices": choices}
                if usage_ is not None:
                    d["usage"] = usage_
                self._chunk("data: " + json.dumps(d, ensure_ascii=False) + "\n\n")

            if chat:
                event([{"index": idx, "delta": {"role": "assistant", "content": ""},
                        "logprobs": None, "finish_reason": None} for idx, *_ in plan])
            steps = max((len(p[1]) for p in plan), default=0)
            for step in range(max(steps, 1)):
                if args.token_delay > 0:
                    time.sleep(args.token_delay)
                choices = []
                for idx, pieces, finish, stop_reason in plan:
                    if step >= max(len(pieces), 1):
                        continue
                    piece = pieces[step] if pieces else ""
                    last = step == max(len(pieces), 1) - 1
                    if chat:
                        choices.append({"index": idx, "delta": {"content": piece},
                                        "logprobs": None,
                                        "finish_reason": finish if last else None,
                                        "stop_reason": stop_reason if last else None})
                    else:
                        choices.append({"index": idx, "text": piece, "logprobs": None,
                                        "finish_reason": finish if last else None,
                                        "stop_reason": stop_reason if last else None})
                    if pieces:
                        produced += 1
                # One event per choice so each SSE event carries one token of one choice.
                for c in choices:
                    event([c])
            if include_usage:
                event([], usage)
            self._chunk("data: [DONE]\n\n")
            self._chunk(b"")
            return produced

    return Handler


# --------------------------------------------------------------------------------------
# Startup / lifecycle
# --------------------------------------------------------------------------------------

def _traceback(frames, final):
    lines = ["Traceback (most recent call last):"]
    for f, ln, fn, code in frames:
        lines.append('  File "%s", line %d, in %s' % (f, ln, fn))
        lines.append("    " + code)
    lines.append(final)
    return "\n".join(lines)


def _exc_line(msg):
    if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b:?", msg):
        return msg
    return "RuntimeError: " + msg


def _visible_devices():
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return None
    return [d.strip() for d in cvd.split(",") if d.strip()]


# --------------------------------------------------------------------------------------
# Ray mode: a server across several nodes (--distributed-executor-backend ray)
# --------------------------------------------------------------------------------------

def ray_mode(backend, tp, pp, local_gpus):
    """Whether vLLM would run this server across a Ray cluster: the Ray backend with more than
    one pipeline stage, or with a world (TP x PP) larger than this node's GPUs (None: unknown)."""
    if (backend or "").strip().lower() != "ray":
        return False
    return pp > 1 or (local_gpus is not None and tp * pp > local_gpus)


def ray_refusal(tp, pp, nodes):
    """None when the Ray cluster whose ray.nodes() is `nodes` can hold the server: TP x PP
    GPUs in all, and each pipeline stage's TP workers on one node. Otherwise the text of the
    ValueError vLLM would fail with, and what the cluster has."""
    alive = [n for n in nodes if n.get("Alive")]
    gpus = {}
    for n in alive:
        name = n.get("NodeManagerHostname") or n.get("NodeManagerAddress") or "?"
        gpus[name] = gpus.get(name, 0) + int(float(n.get("Resources", {}).get("GPU", 0)))
    have = ", ".join("%s: %d GPU(s)" % (k, v) for k, v in sorted(gpus.items())) or "no alive node"
    world = tp * pp
    if sum(gpus.values()) < world:
        return ("ValueError: The number of required GPUs exceeds the total number of available "
                "GPUs in the placement group: tensor_parallel_size %d x pipeline_parallel_size %d "
                "= %d GPUs, but the Ray cluster has %d on %d node(s) (%s)."
                % (tp, pp, world, sum(gpus.values()), len(gpus), have))
    if sum(g // tp for g in gpus.values()) < pp:
        return ("ValueError: %d pipeline stages of tensor_parallel_size %d do not fit: each stage's "
                "%d GPUs must be on one node, and the Ray cluster has %s."
                % (pp, tp, tp, have))
    return None


def _ray_fail(final):
    vlog("ERROR", "ray_utils.py:1", "Failed to initialize the Ray cluster.", stream=sys.stderr)
    _write(sys.stderr, _traceback(
        [("/vllm-sim/vllm/v1/executor/ray_utils.py", 1, "initialize_ray_cluster",
          "ray.init(address=ray_address)"),
         ("/vllm-sim/vllm/v1/executor/ray_utils.py", 1, "_verify_bundles",
          "raise ValueError(...)")], final))
    sys.stdout.flush()
    return 1


def start_on_ray(args):
    """Joins the Ray cluster the job started (RAY_ADDRESS, else `auto`), refuses unless it has
    the nodes and GPUs the server needs, then places one task per GPU through a placement group
    (as vLLM places its workers) and logs where each rank runs. 0 on success."""
    W = "ray_utils.py:1"
    try:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
    except ImportError as e:
        return _ray_fail("ModuleNotFoundError: %s (the Ray backend needs Ray: run the "
                         "simulator with a python that has it, e.g. slurm/install-ray.sh's venv)" % e)
    address = os.environ.get("RAY_ADDRESS") or "auto"
    vlog("INFO", W, "Connecting to the existing Ray cluster at address: %s" % address)
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except Exception as e:  # ConnectionError and friends: vLLM fails the same way
        return _ray_fail("ConnectionError: could not connect to the Ray cluster at %s: %s"
                         % (address, str(e).splitlines()[0] if str(e) else type(e).__name__))
    tp, pp = args.tensor_parallel_size, args.pipeline_parallel_size
    nodes = ray.nodes()
    refusal = ray_refusal(tp, pp, nodes)
    if refusal:
        return _ray_fail(refusal)
    alive = [n for n in nodes if n.get("Alive")]
    vlog("INFO", W, "Ray cluster: %d node(s), %d GPU(s)" % (
        len(alive), int(ray.cluster_resources().get("GPU", 0))))
    world = tp * pp
    pg = placement_group([{"GPU": 1, "CPU": 0}] * world, strategy="PACK")
    try:
        ray.get(pg.ready(), timeout=60)
    except Exception as e:
        return _ray_fail("ValueError: the placement group of %d GPU bundles was not ready within "
                         "60 s: %s" % (world, type(e).__name__))

    @ray.remote(num_gpus=1, num_cpus=0)
    def where():
        import socket as _s
        return _s.gethostname(), os.environ.get("CUDA_VISIBLE_DEVICES", "")

    refs = [where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
        placement_group=pg, placement_group_bundle_index=i)).remote() for i in range(world)]
    for rank, (host, cvd) in enumerate(ray.get(refs, timeout=120)):
        vlog("INFO", "ray_executor.py:1", "rank %d (pipeline stage %d, tensor rank %d) on %s, "
             "CUDA_VISIBLE_DEVICES=%s" % (rank, rank // tp, rank % tp, host, cvd))
    args.ray_placement_group = pg
    return 0


def _port_in_use(host, port):
    ulog("ERROR", "[Errno 98] error while attempting to bind on address ('%s', %d): %s"
         % (host, port, ERRNO_ADDRINUSE_TEXT))
    sys.stderr.flush()
    os._exit(1)


def main(argv=None, form="serve"):
    if argv is None:
        argv = sys.argv[1:]
    if form == "serve":
        if argv and argv[0] in ("--version", "-v"):
            print(SIM_VERSION)
            return 0
        if argv and argv[0] == "serve":
            argv = argv[1:]
        elif argv and not argv[0].startswith("-"):
            sys.stderr.write("vllm-sim: only the `serve` subcommand is simulated (got %r)\n"
                             % argv[0])
            return 2
        elif argv and argv[0] in ("-h", "--help"):
            pass
        else:
            sys.stderr.write("usage: vllm serve [model_tag] [options]\n"
                             "vllm: error: a subcommand is required (vllm-sim supports `serve`)\n")
            return 2
    args = parse_args(argv, form)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # A parent may start us with these blocked (the mask is inherited across exec: a Swift test
    # runner's worker threads block nearly every signal). vLLM is stopped by SIGTERM (scancel),
    # so it must be deliverable whatever the parent's mask was.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    pid = os.getpid()
    host_disp = args.host if args.host else "0.0.0.0"
    bind_host = args.host if args.host else ""
    W = "api_server.py:1"
    vlog("INFO", W, "vLLM API server version %s" % SIM_VERSION)
    vlog("WARNING", W, "*** THIS IS vllm-sim, A SIMULATOR OF vLLM FOR TESTS AND DEMOS. "
                       "No model is loaded, no GPU is used, and all generated text is "
                       "synthetic. ***")
    shown = {"model": args.model, "served_model_name": args.served_names,
             "host": args.host, "port": args.port,
             "tensor_parallel_size": args.tensor_parallel_size,
             "pipeline_parallel_size": args.pipeline_parallel_size,
             "max_model_len": args.max_model_len_value, "max_num_seqs": args.max_num_seqs}
    vlog("INFO", W, "args (api key redacted): %s" % json.dumps(shown))
    ignored = {}
    used = ("--uvicorn-log-level", "--disable-log-stats", "--enable-log-requests",
            "--distributed-executor-backend",
            "--limit-mm-per-prompt", "--ssl-keyfile", "--ssl-certfile")
    for f in _IGNORED_VALUE_FLAGS + _IGNORED_BOOL_FLAGS:
        v = getattr(args, f[2:].replace("-", "_"))
        if v is not None and f not in used:
            ignored[f[2:]] = v
    if ignored:
        vlog("INFO", W, "accepted and ignored by the simulator: %s" % json.dumps(ignored))
    vlog("INFO", W, "API key authentication: %s" % ("enabled" if args.api_key else "disabled"))
    vlog("INFO", W, "sim knobs: load_seconds=%s fail_startup=%s crash_after=%s "
                    "unhealthy_after=%s token_delay=%s" % (
                        args.load_seconds, "set" if args.fail_startup else "unset",
                        args.crash_after, args.unhealthy_after, args.token_delay))
    devices = _visible_devices()
    cvd_raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    vlog("INFO", W, "CUDA_VISIBLE_DEVICES=%s" % (cvd_raw if cvd_raw is not None else "<unset>"))
    world = args.tensor_parallel_size * args.pipeline_parallel_size
    if ray_mode(args.distributed_executor_backend, args.tensor_parallel_size,
                args.pipeline_parallel_size, None if devices is None else len(devices)):
        if start_on_ray(args) != 0:
            return 1
    elif devices is not None and world > len(devices):
        vlog("ERROR", "engine.py:1", "EngineCore failed to start.", stream=sys.stderr)
        _write(sys.stderr, _traceback(
            [("/vllm-sim/vllm/v1/engine/core.py", 1, "run_engine_core",
              "engine_core = EngineCoreProc(*args, **kwargs)"),
             ("/vllm-sim/vllm/config.py", 1, "verify_with_parallel_config",
              "raise ValueError(...)")],
            "ValueError: World size (%d = tensor_parallel_size %d x pipeline_parallel_size %d) "
            "is larger than the number of available GPUs (%d) in this node "
            "(CUDA_VISIBLE_DEVICES=%s)." % (world, args.tensor_parallel_size,
                                            args.pipeline_parallel_size, len(devices), cvd_raw)))
        sys.stdout.flush()
        return 1

    # Reserve the port early (like vLLM), but listen only once "loaded".
    family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
    SimHTTPServer.address_family = family
    state = State(args)
    try:
        httpd = SimHTTPServer((bind_host, args.port), make_handler(state),
                              bind_and_activate=False)
        httpd.server_bind()
    except OSError as e:
        if e.errno in (98, 48):
            _port_in_use(host_disp, args.port)
        ulog("ERROR", "[Errno %s] error while attempting to bind on address ('%s', %d): %s"
             % (e.errno, host_disp, args.port, (e.strerror or str(e)).lower()))
        return 1

    # Simulated weight loading.
    vlog("INFO", "gpu_model_runner.py:1", "Starting to load model %s (simulated)..." % args.model)
    if args.load_seconds > 0:
        t0 = time.monotonic()
        shards = 4
        for i in range(1, shards + 1):
            deadline = t0 + args.load_seconds * i / shards
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if stop.wait(min(left, 0.2)):
                    vlog("INFO", W, "Received signal during model loading, exiting.")
                    httpd.server_close()
                    return 0
            vlog("INFO", "weight_utils.py:1", "Loading safetensors checkpoint shards: %3d%% "
                 "Completed | %d/%d (simulated)" % (100 * i // shards, i, shards))
    vlog("INFO", "gpu_model_runner.py:1", "Model loading took 0.0000 GiB and %.2f seconds "
                                          "(simulated)" % args.load_seconds)

    if args.fail_startup:
        vlog("ERROR", "core.py:1", "EngineCore failed to start.", stream=sys.stderr)
        _write(sys.stderr, _traceback(
            [("/vllm-sim/vllm/v1/engine/core.py", 1, "run_engine_core",
              "engine_core = EngineCoreProc(*args, **kwargs)"),
             ("/vllm-sim/vllm/v1/engine/core.py", 1, "__init__",
              "self._initialize_kv_caches(vllm_config)"),
             ("/vllm-sim/vllm_sim.py", 1, "simulated_failure",
              "raise  # --sim-fail-startup / VLLM_SIM_FAIL_STARTUP")],
            _exc_line(args.fail_startup)))
        sys.stdout.flush()
        httpd.server_close()
        return 1

    vlog("INFO", "kv_cache_utils.py:1", "GPU KV cache size: 0 tokens (simulated); "
                                        "maximum model length %d" % state.max_model_len)
    vlog("INFO", W, "Starting vLLM API server on http://%s:%d" % (host_disp, args.port))
    vlog("INFO", W, "Available routes are: /health, /ping, /version, /metrics, /v1/models, "
                    "/v1/completions, /v1/chat/completions")
    scheme = "http"
    if args.ssl_certfile or args.ssl_keyfile:
        # HTTPS like vLLM's --ssl-certfile/--ssl-keyfile (uvicorn). The TLS handshake runs in
        # the connection's own thread, so a slow client cannot stall the accept loop.
        if not (args.ssl_certfile and args.ssl_keyfile):
            ulog("ERROR", "--ssl-certfile and --ssl-keyfile go together", stream=sys.stderr)
            return 1
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(args.ssl_certfile, args.ssl_keyfile)
        except (OSError, ssl.SSLError) as e:
            ulog("ERROR", "cannot load the TLS certificate or key: %s" % e, stream=sys.stderr)
            return 1
        httpd.ssl_context = ctx
        scheme = "https"
    try:
        httpd.server_activate()
    except OSError as e:
        if e.errno in (98, 48):
            _port_in_use(host_disp, args.port)
        raise
    ulog("INFO", "Started server process [%d]" % pid)
    ulog("INFO", "Waiting for application startup.")
    ulog("INFO", "Application startup complete.")
    ulog("INFO", "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)" % (scheme, host_disp, args.port))

    server_thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                     daemon=True, name="http")
    server_thread.start()

    def engine_dead_log():
        vlog("ERROR", "core.py:1", "EngineCore encountered a fatal error (simulated).",
             stream=sys.stderr)
        _write(sys.stderr, _traceback(
            [("/vllm-sim/vllm/v1/engine/core.py", 1, "run_engine_core",
              "engine_core.run_busy_loop()"),
             ("/vllm-sim/vllm/v1/engine/core.py", 1, "run_busy_loop",
              "self._process_engine_step()")],
            "RuntimeError: Engine loop has died"))

    if args.crash_after is not None:
        def crash():
            if stop.wait(args.crash_after):
                return
            engine_dead_log()
            vlog("ERROR", "async_llm.py:1", "AsyncLLM output_handler failed. Engine loop has "
                                            "died; shutting down (vllm-sim --sim-crash-after).",
                 stream=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
        threading.Thread(target=crash, daemon=True, name="sim-crash").start()

    if args.unhealthy_after is not None:
        def sicken():
            if stop.wait(args.unhealthy_after):
                return
            state.unhealthy = True
            engine_dead_log()
            vlog("ERROR", "api_server.py:1", "Engine is dead; the API server keeps running but "
                                             "/health returns 503 (vllm-sim "
                                             "--sim-unhealthy-after).", stream=sys.stderr)
        threading.Thread(target=sicken, daemon=True, name="sim-unhealthy").start()

    if not args.disable_log_stats:
        def stats():
            while not stop.wait(10.0):
                line = state.stats_line()
                if line:
                    vlog("INFO", "loggers.py:1", line)
        threading.Thread(target=stats, daemon=True, name="sim-stats").start()

    while not stop.wait(0.5):
        pass
    ulog("INFO", "Shutting down")
    httpd.shutdown()
    httpd.server_close()
    ulog("INFO", "Waiting for application shutdown.")
    ulog("INFO", "Application shutdown complete.")
    ulog("INFO", "Finished server process [%d]" % pid)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], form="serve"))
