"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks, with fault injection.

It speaks the chat-completions protocol the `openai` SDK expects. A `script` decides each reply, so
tests can inject 429 + Retry-After, 500, hangs past the client's timeout, malformed bodies and
refusals, and read the request log afterwards (what was sent, how often, with which headers).

Optional, off by default, all in the real OpenAI wire format:
- token counting hooks for `usage` (`prompt_tokens=`, `completion_tokens=`);
- RPM/TPM limits enforced with replenishing buckets, 429s and `x-ratelimit-*` headers (`rpm=`, `tpm=`, `window=`);
- the Files and Batch APIs in memory, batches progressing over `batch_seconds` and answered by the same script.

Run it alone with `python tests/loopback_openai.py --delay 0.05` (prints the port); `--rpm`/`--tpm` add limits.
"""

from __future__ import annotations

import argparse
import email
import hashlib
import json
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Action:
    """What the server does with one request."""

    text: str | None = None            # reply with this message content
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None          # raw body (e.g. malformed JSON)
    delay: float = 0.0                 # sleep before answering (a hang when longer than the client timeout)
    finish_reason: str = "stop"
    model: str = "loopback-model-v1"


@dataclass
class LoggedRequest:
    """One chat request as the server saw it (a chat call, a rate-limited call, or a processed batch line)."""

    fingerprint: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    started: float
    finished: float = 0.0
    batch_id: str | None = None        # set for lines answered inside a batch
    usage: dict[str, int] | None = None  # the usage billed in a 200 reply


def fingerprint(body: dict[str, Any]) -> str:
    """Identity of a request as the factory built it: messages + seed (+ model)."""
    payload = {"model": body.get("model"), "messages": body.get("messages"), "seed": body.get("seed")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


WORDS = ("amber velvet kettle orbit lantern cedar pixel harbor meadow copper falcon quartz summit "
         "willow ember canyon glacier maple nimbus otter prairie radish saffron tundra umber violet "
         "walnut yarrow zephyr basil cobalt dune").split()


def default_text(body: dict[str, Any]) -> str:
    """A valid, unique reply: echoes the label the prompt asks for, varies with the seed."""
    user = body["messages"][-1]["content"]
    label = re.search(r'"label": "([^"]+)"', user)
    seed = body.get("seed", 0)
    if '"instruction"' in user:
        # Distinct wording per seed, so Self-Instruct's ROUGE-L novelty check keeps them.
        words = random.Random(seed).sample(WORDS, 6)
        return json.dumps({"instruction": f"Describe the {' '.join(words)} for shoppers.",
                           "response": f"It is {words[0]} and {words[1]}, built for {words[2]} days."})
    return json.dumps({"label": label.group(1) if label else "unknown",
                       "text": f"Sample text {seed} with its own distinct words {seed * 7919 % 10007}."})


Script = Callable[[dict[str, Any], int], Action]
ExpireAfter = int | Sequence[int | None] | Callable[[int], int | None] | None


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def insufficient_quota() -> Action:
    """The 429 OpenAI sends when the account's credit is spent (no Retry-After: waiting does not help)."""
    return Action(status=429, body=json.dumps(error_body(
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota", code="insufficient_quota")).encode())


def openai_duration(seconds: float) -> str:
    """Format a duration like OpenAI's x-ratelimit-reset-* headers (Go style): "120ms", "1.5s", "6m0s"."""
    ms = round(max(0.0, seconds) * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "") + f"{secs}s"


# ---------------------------------------------------------------- rate limits

class _Bucket:
    """A continuously refilling bucket: holds at most `limit`, regains limit/window per second."""

    def __init__(self, limit: int, window: float, now: float) -> None:
        self.limit = limit
        self.rate = limit / window
        self.level = float(limit)
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(float(self.limit), self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, cost: int) -> float:
        """Seconds until `cost` fits (0 when it fits now)."""
        return max(0.0, (cost - self.level) / self.rate)

    def headers(self, kind: str) -> dict[str, str]:
        return {f"x-ratelimit-limit-{kind}": str(self.limit),
                f"x-ratelimit-remaining-{kind}": str(max(0, math.floor(self.level))),
                f"x-ratelimit-reset-{kind}": openai_duration((self.limit - self.level) / self.rate)}


@dataclass
class Verdict:
    """The limiter's answer for one request: `kind` is None when admitted, else "requests" or "tokens"."""

    kind: str | None
    headers: dict[str, str]
    retry_after: float | None = None   # None when admitted, or when the request can never fit
    message: str = ""


class RateLimiter:
    """OpenAI-style admission control: one bucket per set limit; a request takes 1 request and its estimated tokens."""

    def __init__(self, rpm: int | None, tpm: int | None, window: float = 60.0) -> None:
        now = time.monotonic()
        self.window = window
        self.buckets = {kind: _Bucket(limit, window, now) for kind, limit in (("requests", rpm), ("tokens", tpm))
                        if limit is not None}
        self._lock = threading.Lock()

    def admit(self, tokens: int) -> Verdict:
        costs = {"requests": 1, "tokens": tokens}
        with self._lock:
            now = time.monotonic()
            for bucket in self.buckets.values():
                bucket.refill(now)
            short = {kind: b.wait(costs[kind]) for kind, b in self.buckets.items() if b.level < costs[kind]}
            if not short:
                for kind, bucket in self.buckets.items():
                    bucket.level -= costs[kind]
            headers = {k: v for kind, b in self.buckets.items() for k, v in b.headers(kind).items()}
        if not short:
            return Verdict(None, headers)
        kind = max(short, key=short.__getitem__)  # the binding limit: the one that frees up last
        bucket, cost = self.buckets[kind], costs[kind]
        per = {"requests": "min (RPM)", "tokens": "min (TPM)"}[kind] if self.window == 60.0 else f"{self.window:g}s"
        if cost > bucket.limit:  # no amount of waiting helps; OpenAI says so and gives no retry time
            return Verdict(kind, headers, None, f"Request too large for {kind} per {per} in organization org-loopback: "
                           f"Limit {bucket.limit}, Requested {cost}. The input or output tokens must be reduced "
                           "in order to run successfully.")
        wait = max(short[kind], 0.001)
        used = round(bucket.limit - bucket.level)
        return Verdict(kind, headers, wait, f"Rate limit reached for {kind} per {per} in organization org-loopback: "
                       f"Limit {bucket.limit}, Used {used}, Requested {cost}. Please try again in "
                       f"{openai_duration(wait)}. Visit https://platform.openai.com/account/rate-limits to learn more.")


# ---------------------------------------------------------------- files and batches

@dataclass
class StoredFile:
    """A file in the in-memory Files API."""

    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed"}


@dataclass
class BatchState:
    """One batch and its progress; `to_json()` is what the API returns."""

    id: str
    index: int                          # creation order on this server (for per-batch expiry)
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None
    created: float                      # time.time() at creation; the schedule is relative to it
    requests: list[dict[str, Any]]      # validated input lines
    errors: list[dict[str, Any]]        # validation errors (the batch fails when non-empty)
    expire_after: int | None
    model: str | None = None
    status: str = "validating"
    done: int = 0                       # lines answered so far
    completed: int = 0
    failed: int = 0
    output_lines: list[dict[str, Any]] = field(default_factory=list)
    error_lines: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    times: dict[str, float] = field(default_factory=dict)  # in_progress_at, finalizing_at, ... as time.time()

    def to_json(self) -> dict[str, Any]:
        stamp = {name: (int(self.times[name]) if name in self.times else None) for name in (
            "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at")}
        counted = self.status not in ("validating", "failed")  # OpenAI reports 0/0/0 until validation passes
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": int(self.created), "expires_at": int(self.created) + 24 * 3600, **stamp,
            "request_counts": {"total": len(self.requests) if counted else 0, "completed": self.completed,
                               "failed": self.failed},
            "metadata": self.metadata, "model": self.model,
        }


class ApiError(Exception):
    """An OpenAI error reply (status + envelope) raised from inside the Files/Batch logic."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", *,
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_, param=param, code=code)


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _validate_lines(content: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Parse a batch input file: (requests, errors), errors shaped like OpenAI's (code, message, param, line)."""
    requests: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    models: set[Any] = set()

    def bad(line: int, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": line})

    lines = content.decode("utf-8", errors="replace").splitlines()
    if not any(line.strip() for line in lines):
        errors.append({"code": "empty_file", "message": "The batch input file is empty.", "param": None, "line": None})
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError:
            item = None
        if not isinstance(item, dict):
            bad(number, "invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            bad(number, "missing_required_parameter", "Missing required parameter: 'custom_id'.", "custom_id")
        elif custom_id in seen:
            bad(number, "duplicate_custom_id", "The custom_id for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch.", "custom_id")
        if item.get("method") != "POST":
            bad(number, "invalid_method", "The method for this request must be 'POST'.", "method")
        if item.get("url") != endpoint:
            bad(number, "url_mismatch", f"The provided URL {item.get('url')!r} does not match the batch endpoint "
                f"{endpoint!r}.", "url")
        body = item.get("body")
        if not isinstance(body, dict):
            bad(number, "missing_required_parameter", "Missing required parameter: 'body'.", "body")
        else:
            models.add(body.get("model"))
            if len(models) > 1:
                bad(number, "model_mismatch", "The provided model does not match the model of the other requests "
                    "in the batch; a batch may use only one model.", "body.model")
        if isinstance(custom_id, str):
            seen.add(custom_id)
        requests.append(item)
    return requests, errors


class BatchAPI:
    """The Files and Batch APIs in memory. Batches advance lazily: every read computes the state from the time
    elapsed since creation and answers the lines that came due, each exactly once, through the server's script.

    Schedule (B = batch_seconds): validating for the first 10 % of B, in_progress until 90 % (line i of n is due
    at 10 % + 80 % * (i+1)/n, so request_counts grow linearly), finalizing until B, then completed. A batch with
    an expiry answers that many lines, stays in_progress, and at B becomes expired; unanswered lines go to the
    error file as `batch_expired`. A cancelled batch is `cancelling` for 10 % of B, then `cancelled`.
    """

    def __init__(self, answer: Callable[[dict[str, Any], str], tuple[int, Any]],
                 batch_seconds: float, expire_after: ExpireAfter) -> None:
        self._answer = answer           # (chat body, batch id) -> (status, response body)
        self.batch_seconds = batch_seconds
        self.expire_after = expire_after
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, BatchState] = {}
        self._lock = threading.RLock()  # one reader at a time answers due lines: each is answered once

    # files

    def add_file(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        with self._lock:
            stored = StoredFile(_new_id("file-"), filename, purpose, content, int(time.time()))
            self.files[stored.id] = stored
            return stored

    def file(self, file_id: str) -> StoredFile:
        with self._lock:
            if file_id not in self.files:
                raise ApiError(404, f"No such File object: {file_id}", param="id")
            return self.files[file_id]

    def delete_file(self, file_id: str) -> dict[str, Any]:
        with self._lock:
            self.file(file_id)
            del self.files[file_id]
            return {"id": file_id, "object": "file", "deleted": True}

    def list_files(self, purpose: str | None) -> dict[str, Any]:
        with self._lock:
            data = [f.to_json() for f in reversed(self.files.values()) if purpose in (None, f.purpose)]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": False}

    # batches

    def create(self, params: dict[str, Any]) -> BatchState:
        endpoint = params.get("endpoint")
        if endpoint != "/v1/chat/completions":
            raise ApiError(400, f"Invalid value for 'endpoint': {endpoint!r}; this server only batches "
                           "'/v1/chat/completions'.", param="endpoint", code="invalid_value")
        if params.get("completion_window") != "24h":
            raise ApiError(400, "Invalid value for 'completion_window': only '24h' is supported.",
                           param="completion_window", code="invalid_value")
        with self._lock:
            source = self.files.get(str(params.get("input_file_id")))
            if source is None:
                raise ApiError(400, f"Invalid 'input_file_id': {params.get('input_file_id')!r}. No such file.",
                               param="input_file_id", code="invalid_value")
            requests, errors = _validate_lines(source.content, endpoint)
            index = len(self.batches)
            model = next((r["body"].get("model") for r in requests if isinstance(r.get("body"), dict)), None)
            batch = BatchState(_new_id("batch_"), index, source.id, endpoint, "24h", params.get("metadata"),
                               time.time(), requests, errors, self._expiry(index), model=model)
            self.batches[batch.id] = batch
            return batch

    def get(self, batch_id: str) -> BatchState:
        with self._lock:
            if batch_id not in self.batches:
                raise ApiError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
            batch = self.batches[batch_id]
            self.advance(batch)
            return batch

    def list_batches(self, limit: int, after: str | None) -> dict[str, Any]:
        with self._lock:
            newest_first = list(reversed(self.batches.values()))
            ids = [b.id for b in newest_first]
            start = ids.index(after) + 1 if after in ids else (len(ids) if after else 0)
            page = newest_first[start:start + limit]
            for batch in page:
                self.advance(batch)
            data = [b.to_json() for b in page]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": start + limit < len(ids)}

    def cancel(self, batch_id: str) -> BatchState:
        with self._lock:
            batch = self.get(batch_id)
            if batch.status in ("validating", "in_progress", "finalizing"):
                batch.status = "cancelling"
                batch.times["cancelling_at"] = time.time()
            elif batch.status != "cancelling":
                raise ApiError(409, f"Cannot cancel a batch with status '{batch.status}'.")
            return batch

    def _expiry(self, index: int) -> int | None:
        spec = self.expire_after
        if callable(spec):
            return spec(index)
        if isinstance(spec, Sequence):
            return spec[index] if index < len(spec) else None
        return spec

    def advance(self, batch: BatchState, now: float | None = None) -> None:
        """Bring `batch` up to `now`: move through the statuses and answer the lines that came due."""
        with self._lock:
            now = time.time() if now is None else now
            span, t0, n = self.batch_seconds, batch.created, len(batch.requests)
            if batch.status == "validating":
                if now < t0 + 0.1 * span:
                    return
                if batch.errors:
                    batch.status, batch.times["failed_at"] = "failed", t0 + 0.1 * span
                    return
                batch.status, batch.times["in_progress_at"] = "in_progress", t0 + 0.1 * span
            if batch.status == "cancelling":
                if now >= batch.times["cancelling_at"] + 0.1 * span:
                    self._close(batch, "cancelled", "batch_cancelled",
                                "This request was not executed because the batch was cancelled.")
                    batch.times["cancelled_at"] = batch.times["cancelling_at"] + 0.1 * span
                return
            if batch.status == "in_progress":
                busy = 0.8 * span
                due = n if busy <= 0 or now >= t0 + 0.9 * span else math.floor((now - t0 - 0.1 * span) / busy * n)
                cap = n if batch.expire_after is None else min(n, batch.expire_after)
                while batch.done < min(due, cap):
                    self._run_line(batch)
                if batch.done < n and now >= t0 + span:
                    self._close(batch, "expired", "batch_expired",
                                "This request could not be executed before the completion window expired.")
                    batch.times["expired_at"] = t0 + span
                    return
                if batch.done == n and now >= t0 + 0.9 * span:
                    batch.status, batch.times["finalizing_at"] = "finalizing", t0 + 0.9 * span
            if batch.status == "finalizing" and now >= t0 + span:
                self._close(batch, "completed", None, "")
                batch.times["completed_at"] = t0 + span

    def _run_line(self, batch: BatchState) -> None:
        item = batch.requests[batch.done]
        status, body = self._answer(item["body"], batch.id)
        line = {"id": _new_id("batch_req_"), "custom_id": item["custom_id"],
                "response": {"status_code": status, "request_id": uuid.uuid4().hex, "body": body}, "error": None}
        if status == 200:
            batch.output_lines.append(line)
            batch.completed += 1
        else:
            batch.error_lines.append(line)
            batch.failed += 1
        batch.done += 1

    def _close(self, batch: BatchState, status: str, skipped_code: str | None, skipped_message: str) -> None:
        """End the batch: unanswered lines become error lines, and both files are written."""
        if skipped_code:
            for item in batch.requests[batch.done:]:
                batch.error_lines.append({"id": _new_id("batch_req_"), "custom_id": item["custom_id"], "response": None,
                                          "error": {"code": skipped_code, "message": skipped_message}})
        for lines, kind in ((batch.output_lines, "output"), (batch.error_lines, "error")):
            if lines:
                content = "".join(json.dumps(line) + "\n" for line in lines).encode()
                stored = self.add_file(f"{batch.id}_{kind}.jsonl", "batch_output", content)
                setattr(batch, f"{kind}_file_id", stored.id)
        batch.status = status


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a multipart/form-data body: name -> (filename or None, exact bytes)."""
    header = email.message_from_string(f"Content-Type: {content_type}\n\n")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str):
        raise ApiError(400, "Expected multipart/form-data with a boundary.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    # Splitting on CRLF--boundary keeps each value's bytes exact (the email parser may rewrite line endings).
    for chunk in (b"\r\n" + raw).split(b"\r\n--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, _, value = chunk.partition(b"\r\n")[2].partition(b"\r\n\r\n")
        part = email.message_from_bytes(head + b"\r\n\r\n")
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = (part.get_filename(), value)
    return fields


# ---------------------------------------------------------------- the server

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen() backlog: many clients connect at once in the benchmarks


class LoopbackOpenAI:
    """Threaded server; use as a context manager. `script(body, n)` gets the request and how many
    times this fingerprint was seen before (0 on the first try).

    Optional (all off by default): `prompt_tokens(messages)` / `completion_tokens(text)` count the `usage`
    tokens (else 50 and the reply's word count); `rpm` / `tpm` per `window` seconds limit chat requests like
    OpenAI (429 + x-ratelimit-* headers unless `rate_limit_headers=False`, Retry-After unless
    `rate_limit_retry_after=False`); `batch_seconds`
    is how long a batch takes to complete, `batch_expire_after` how many lines a batch answers before it
    expires (an int, a list indexed by batch creation order, or a callable of that index).
    """

    def __init__(self, script: Script | None = None, *, delay: float = 0.0, accept_json_schema: bool = True,
                 port: int = 0, prompt_tokens: Callable[[list[dict[str, Any]]], int] | None = None,
                 completion_tokens: Callable[[str], int] | None = None, rpm: int | None = None,
                 tpm: int | None = None, window: float = 60.0, rate_limit_retry_after: bool = True,
                 rate_limit_headers: bool = True, batch_seconds: float = 0.0, batch_expire_after: ExpireAfter = None) -> None:
        self.script = script or (lambda body, n: Action(text=default_text(body)))
        self.delay = delay
        self.accept_json_schema = accept_json_schema
        self.count_prompt = prompt_tokens
        self.count_completion = completion_tokens
        self.limiter = RateLimiter(rpm, tpm, window) if rpm is not None or tpm is not None else None
        self.rate_limit_retry_after = rate_limit_retry_after
        self.rate_limit_headers = rate_limit_headers  # False: a server that enforces limits without saying them
        self.rate_limited = 0                   # 429s sent by the limiter (not by the script)
        self.rate_limited_at: list[float] = []  # time.time() of each
        self.log: list[LoggedRequest] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self.batch_api = BatchAPI(self._answer_batch_line, batch_seconds, batch_expire_after)
        self.files = self.batch_api.files
        self.batches = self.batch_api.batches
        self._server = _Server(("127.0.0.1", port), self._handler())
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LoopbackOpenAI:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def completed(self) -> list[LoggedRequest]:
        """Requests answered with 200."""
        return [r for r in self.log if r.status == 200 and r.finished]

    def usage(self, body: dict[str, Any], text: str) -> dict[str, int]:
        """The `usage` block of a reply with `text` to `body`."""
        prompt = self.count_prompt(body.get("messages") or []) if self.count_prompt else 50
        completion = self.count_completion(text) if self.count_completion else max(1, len(text.split()))
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def admission_tokens(self, body: dict[str, Any]) -> int:
        """What OpenAI charges against TPM at admission: prompt tokens + the requested completion budget."""
        prompt = self.count_prompt(body.get("messages") or []) if self.count_prompt else 50
        budget = next((body[k] for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None), 16)
        return prompt + int(budget)

    def _decide(self, body: dict[str, Any]) -> tuple[str, Action]:
        """Count the fingerprint and ask the script (shared by chat requests and batch lines)."""
        fp = fingerprint(body)
        with self._lock:
            n = self._seen.get(fp, 0)
            self._seen[fp] = n + 1
        fmt = (body.get("response_format") or {}).get("type")
        if fmt == "json_schema" and not self.accept_json_schema:
            return fp, Action(status=400, body=b'{"error": {"message": "response_format json_schema is not supported", '
                                                b'"type": "invalid_request_error"}}')
        return fp, self.script(body, n)

    def _completion(self, fp: str, body: dict[str, Any], action: Action) -> dict[str, Any]:
        text = action.text or ""
        return {"id": f"chatcmpl-{fp[:12]}", "object": "chat.completion", "created": int(time.time()),
                "model": action.model,
                "choices": [{"index": 0, "finish_reason": action.finish_reason,
                             "message": {"role": "assistant", "content": text}}],
                "usage": self.usage(body, text)}

    @staticmethod
    def _error_payload(action: Action) -> bytes:
        if action.body is not None:
            return action.body
        return json.dumps({"error": {"message": f"injected {action.status}", "type": "server_error"}}).encode()

    def _answer_batch_line(self, body: dict[str, Any], batch_id: str) -> tuple[int, Any]:
        """Answer one batch line with the script; batch lines skip the limiter and all delays."""
        fp, action = self._decide(body)
        now = time.time()
        entry = LoggedRequest(fp, body, {}, action.status, now, now, batch_id=batch_id)
        with self._lock:
            self.log.append(entry)
        if action.status == 200 and action.body is None:
            reply = self._completion(fp, body, action)
            entry.usage = reply["usage"]
            return 200, reply
        raw = action.body if action.status == 200 else self._error_payload(action)
        try:
            return action.status, json.loads(raw)
        except json.JSONDecodeError:
            return action.status, raw.decode("utf-8", errors="replace")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        api = self.batch_api

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: avoid the 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                      content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, obj: Any) -> None:
                self._send(status, json.dumps(obj).encode())

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raw = b""
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        raw += self.rfile.read(size)
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return raw
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _route(self) -> tuple[list[str], dict[str, list[str]]]:
                """Path segments after /v1 (e.g. ["batches", "batch_x", "cancel"]) and the query."""
                split = urlsplit(self.path)
                parts = [p for p in split.path.split("/") if p]
                return (parts[1:] if parts[:1] == ["v1"] else parts), parse_qs(split.query)

            def _api(self, call: Callable[[], Any]) -> None:
                """Run a Files/Batch call and send its JSON (or its OpenAI error)."""
                try:
                    result = call()
                except ApiError as exc:
                    self._json(exc.status, exc.body)
                    return
                self._json(200, result.to_json() if hasattr(result, "to_json") else result)

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                parts, query = self._route()
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "loopback-model-v1", "object": "model"}]}).encode())
                elif parts == ["files"]:
                    self._api(lambda: api.list_files(query.get("purpose", [None])[0]))
                elif len(parts) == 2 and parts[0] == "files":
                    self._api(lambda: api.file(parts[1]))
                elif len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
                    try:
                        stored = api.file(parts[1])
                    except ApiError as exc:
                        self._json(exc.status, exc.body)
                        return
                    self._send(200, stored.content, content_type="application/octet-stream")
                elif parts == ["batches"]:
                    limit = int(query.get("limit", ["20"])[0])
                    self._api(lambda: api.list_batches(limit, query.get("after", [None])[0]))
                elif len(parts) == 2 and parts[0] == "batches":
                    self._api(lambda: api.get(parts[1]))
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_DELETE(self) -> None:  # noqa: N802
                parts, _ = self._route()
                if len(parts) == 2 and parts[0] == "files":
                    self._api(lambda: api.delete_file(parts[1]))
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:  # noqa: N802
                raw = self._read_body()
                parts, _ = self._route()
                if parts == ["files"]:
                    self._upload(raw)
                elif parts == ["batches"]:
                    try:
                        params = json.loads(raw)
                    except json.JSONDecodeError:
                        self._json(400, error_body("We could not parse the JSON body of your request.", "invalid_request_error"))
                        return
                    self._api(lambda: api.create(params))
                elif len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel":
                    self._api(lambda: api.cancel(parts[1]))
                elif self.path.rstrip("/").endswith("/chat/completions"):
                    self._chat(raw)
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def _upload(self, raw: bytes) -> None:
                try:
                    fields = parse_multipart(self.headers.get("Content-Type", ""), raw)
                    if "file" not in fields or "purpose" not in fields:
                        missing = "file" if "file" not in fields else "purpose"
                        raise ApiError(400, f"Missing required parameter: '{missing}'.", param=missing,
                                       code="missing_required_parameter")
                except ApiError as exc:
                    self._json(exc.status, exc.body)
                    return
                filename, content = fields["file"]
                self._json(200, api.add_file(filename or "upload", fields["purpose"][1].decode(), content).to_json())

            def _chat(self, raw: bytes) -> None:
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    return  # the client went away mid-request (e.g. killed)
                limit_headers: dict[str, str] = {}
                if server.limiter is not None:
                    verdict = server.limiter.admit(server.admission_tokens(body))
                    limit_headers = verdict.headers if server.rate_limit_headers else {}
                    if verdict.kind is not None:
                        self._reject(body, verdict)
                        return
                fp, action = server._decide(body)
                entry = LoggedRequest(fp, body, {k.lower(): v for k, v in self.headers.items()}, action.status, time.time())
                with server._lock:
                    server.log.append(entry)
                time.sleep(server.delay + action.delay)
                if action.body is not None or action.status != 200:
                    payload = server._error_payload(action)
                else:
                    reply = server._completion(fp, body, action)
                    entry.usage = reply["usage"]
                    payload = json.dumps(reply).encode()
                # Marked before the write: a client that reads the reply and then the log must find it finished.
                entry.finished = time.time()
                try:
                    self._send(action.status, payload, {**limit_headers, **action.headers})
                except (BrokenPipeError, ConnectionResetError):
                    entry.finished = 0.0  # the client gave up (timeout): the reply never arrived

            def _reject(self, body: dict[str, Any], verdict: Verdict) -> None:
                """The limiter's 429: logged, counted, never shown to the script."""
                now = time.time()
                with server._lock:
                    server.rate_limited += 1
                    server.rate_limited_at.append(now)
                    server.log.append(LoggedRequest(fingerprint(body), body, {k.lower(): v for k, v in self.headers.items()},
                                                    429, now, now))
                headers = dict(verdict.headers) if server.rate_limit_headers else {}
                if server.rate_limit_retry_after and verdict.retry_after is not None:
                    headers["Retry-After"] = f"{verdict.retry_after:.3f}"
                payload = json.dumps({"error": {"message": verdict.message, "type": verdict.kind, "param": None,
                                                "code": "rate_limit_exceeded"}}).encode()
                try:
                    self._send(429, payload, headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--rpm", type=int, default=None, help="requests per window (default: unlimited)")
    parser.add_argument("--tpm", type=int, default=None, help="tokens per window (default: unlimited)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds the limits are per")
    parser.add_argument("--batch-seconds", type=float, default=0.0, help="how long a batch takes to complete")
    args = parser.parse_args()
    with LoopbackOpenAI(delay=args.delay, port=args.port, rpm=args.rpm, tpm=args.tpm, window=args.window,
                        batch_seconds=args.batch_seconds) as server:
        print(server.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
