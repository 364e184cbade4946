"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks, with fault injection.

It speaks the chat-completions protocol the `openai` SDK expects. A `script` decides each reply, so
tests can inject 429 + Retry-After, 500, hangs past the client's timeout, malformed bodies and
refusals, and read the request log afterwards (what was sent, how often, with which headers).
Run it alone with `python tests/loopback_openai.py --delay 0.05` (prints the port).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
    fingerprint: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    started: float
    finished: float = 0.0


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen() backlog: many clients connect at once in the benchmarks


class LoopbackOpenAI:
    """Threaded server; use as a context manager. `script(body, n)` gets the request and how many
    times this fingerprint was seen before (0 on the first try)."""

    def __init__(self, script: Script | None = None, *, delay: float = 0.0, accept_json_schema: bool = True,
                 port: int = 0) -> None:
        self.script = script or (lambda body, n: Action(text=default_text(body)))
        self.delay = delay
        self.accept_json_schema = accept_json_schema
        self.log: list[LoggedRequest] = []
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
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

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: avoid the 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": "loopback-model-v1", "object": "model"}]}).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    return  # the client went away mid-request (e.g. killed)
                fp = fingerprint(body)
                with server._lock:
                    n = server._seen.get(fp, 0)
                    server._seen[fp] = n + 1
                fmt = (body.get("response_format") or {}).get("type")
                if fmt == "json_schema" and not server.accept_json_schema:
                    action = Action(status=400, body=b'{"error": {"message": "response_format json_schema is not supported", '
                                                     b'"type": "invalid_request_error"}}')
                else:
                    action = server.script(body, n)
                entry = LoggedRequest(fp, body, {k.lower(): v for k, v in self.headers.items()}, action.status, time.time())
                with server._lock:
                    server.log.append(entry)
                time.sleep(server.delay + action.delay)
                if action.body is not None:
                    payload = action.body
                elif action.status != 200:
                    payload = json.dumps({"error": {"message": f"injected {action.status}", "type": "server_error"}}).encode()
                else:
                    text = action.text or ""
                    payload = json.dumps({
                        "id": f"chatcmpl-{fp[:12]}", "object": "chat.completion", "created": int(time.time()),
                        "model": action.model,
                        "choices": [{"index": 0, "finish_reason": action.finish_reason,
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 50, "completion_tokens": max(1, len(text.split())),
                                  "total_tokens": 50 + max(1, len(text.split()))},
                    }).encode()
                try:
                    self._send(action.status, payload, action.headers)
                    entry.finished = time.time()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): the reply never arrived

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    with LoopbackOpenAI(delay=args.delay, port=args.port) as server:
        print(server.port, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
