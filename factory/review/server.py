"""The review page's HTTP server: 127.0.0.1, a free port, and a session token in the printed address.

Every route needs the token (in the query or the X-Review-Token header), compared in constant time; the
Host header must name this server (a page elsewhere cannot reach it through DNS rebinding). The routes
are fixed: nothing is read by a path a request names, so nothing outside the run directory can be. The
page sets every model-written text with textContent, and its Content-Security-Policy allows only its own
script (by nonce) and requests to this server.
"""

from __future__ import annotations

import getpass
import hmac
import json
import logging
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from factory.review.data import DETAIL_KEYS, embedding_map, list_columns, prompt_of, review_rows
from factory.run.decisions import ACTIONS, RELABEL, Decision, append, verdicts

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20  # a decision request is small; anything bigger is refused unread
MAX_NOTE = 2000
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ReviewServer:
    """Serves one run directory's review page until `shutdown()`."""

    def __init__(self, run_dir: Path, host: str = "127.0.0.1", port: int = 0, who: str | None = None,
                 with_map: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.data = review_rows(self.run_dir)  # a run that is not finished fails here, before the port opens
        self.rows = {row["id"]: row for row in self.data["rows"]}
        # The list is serialised once, as columns: a 100k-row run then loads in one short transfer and parse.
        # Each row's details (every field, provenance, scores) come when the page opens that row.
        self.list_blob = json.dumps(list_columns(self.data), ensure_ascii=False).encode()
        self.token = secrets.token_urlsafe(24)
        self.who = who or _user()
        self.map: dict[str, Any] = {"ready": False}
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self.host, self.port = host, self._httpd.server_address[1]
        if with_map:
            threading.Thread(target=self._compute_map, daemon=True).start()
        else:
            self.map = {"ready": True, "points": {}, "note": "no map (--no-map)"}

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/?token={self.token}"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ReviewServer:
        """Serve from a background thread (tests, benchmarks)."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def shutdown(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _compute_map(self) -> None:
        try:
            self.map = {"ready": True, "points": embedding_map(self.run_dir, self.data["rows"])}
        except Exception as exc:  # noqa: BLE001 - the page works without its map; say why there is none
            log.warning("review: no embedding map: %s", exc)
            self.map = {"ready": True, "points": {}, "note": f"no map: {str(exc)[:200]}"}

    # -- the routes -------------------------------------------------------------------------------

    def decisions(self) -> dict[str, Any]:
        """Every decided row's decision, read fresh: another tab may have decided since."""
        return {row_id: _decision(verdict) for row_id, verdict in verdicts(self.run_dir).items() if row_id in self.rows}

    def decide(self, body: dict[str, Any]) -> dict[str, Any]:
        ids, action, label = body.get("ids"), body.get("action"), body.get("label")
        note = body.get("note") or ""
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i in self.rows for i in ids):
            raise ValueError("ids: a list of this run's row ids")
        if action not in ACTIONS:
            raise ValueError(f"action: one of {', '.join(ACTIONS)}")
        if action == RELABEL and label not in self.data["labels"]:
            raise ValueError(f"label: one of this run's labels ({', '.join(self.data['labels']) or 'it has none'})")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise ValueError(f"note: text of at most {MAX_NOTE} characters")
        append(self.run_dir, [Decision(i, action, label if action == RELABEL else None, note, self.who) for i in ids])
        decided = verdicts(self.run_dir)
        return {"decisions": {i: _decision(decided.get(i)) for i in ids}}

    def page(self, nonce: str) -> bytes:
        text = resources.files("factory.review").joinpath("page.html").read_text(encoding="utf-8")
        return text.replace("__NONCE__", nonce).encode()

    def allowed_host(self, host: str | None) -> bool:
        """On loopback, only requests that name a loopback host (DNS rebinding cannot); elsewhere, as the user
        asked, the token alone guards the page."""
        if self.host not in LOOPBACK:
            return True
        return (host or "").rsplit(":", 1)[0].strip("[]") in LOOPBACK


def _decision(verdict: Any) -> dict[str, Any] | None:
    return None if verdict is None else {"keep": verdict.keep, "label": verdict.label, "note": verdict.note}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _handler(server: ReviewServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "factory-review"
        sys_version = ""

        def log_message(self, *args: Any) -> None:  # the token is in the URL: never log request lines
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json",
                  extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Frame-Options", "DENY")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: Any) -> None:
            self._send(status, json.dumps(payload, ensure_ascii=False).encode())

        def _authorised(self) -> bool:
            query = parse_qs(urlsplit(self.path).query)
            given = self.headers.get("X-Review-Token") or (query.get("token") or [""])[0]
            if not server.allowed_host(self.headers.get("Host")):
                self._json(403, {"error": "this server answers requests to its own address only"})
                return False
            if not hmac.compare_digest(given.encode(), server.token.encode()):
                self._json(403, {"error": "a valid session token is required (the address factory review printed)"})
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if not self._authorised():
                return
            route = urlsplit(self.path).path
            if route == "/":
                nonce = secrets.token_urlsafe(16)
                csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; "
                       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
                self._send(200, server.page(nonce), "text/html; charset=utf-8", {"Content-Security-Policy": csp})
            elif route == "/api/rows":
                self._send(200, server.list_blob)
            elif route == "/api/decisions":
                self._json(200, server.decisions())
            elif route == "/api/row":
                row_id = (parse_qs(urlsplit(self.path).query).get("id") or [""])[0]
                row = server.rows.get(row_id)
                if row is None:
                    self._json(404, {"error": "no such row"})
                else:
                    self._json(200, {**{k: row[k] for k in DETAIL_KEYS}, "prompt": prompt_of(server.run_dir, row_id)})
            elif route == "/api/map":
                self._json(200, server.map)
            else:
                self._json(404, {"error": "no such page"})

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            if urlsplit(self.path).path != "/api/decide":
                self._json(404, {"error": "no such page"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = MAX_BODY + 1  # not a length: refused unread, as a body too large is
            if not 0 <= length <= MAX_BODY:
                self._json(413, {"error": "request too large"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                self._json(200, server.decide(body if isinstance(body, dict) else {}))
            except (ValueError, json.JSONDecodeError) as exc:
                self._json(400, {"error": str(exc)})

    return Handler
