"""What kind of failure a failed request was, and what a user can do about it.

The backends put the cause at the start of `Completion.error` ("connection_error: ...", "http_401: ...",
"timeout (gave up after 3 attempts)"); the build counts failures by kind, stops early when a whole
round of requests failed, and says which kinds stopped it.
"""

from __future__ import annotations

import re

CONNECTION, AUTH, QUOTA, RATE_LIMIT, SERVER, TIMEOUT, BAD_RESPONSE, OTHER = (
    "connection", "auth", "quota", "rate_limit", "server", "timeout", "bad_response", "other")
# Requests that were never sent, so not failures: the money budget refused them, they wait in a
# submitted batch (`--no-wait`), or the build sends nothing (`offline`: export, push and eval applying
# review decisions) and the cache had no reply. The build stops on them without counting them as rejected rows.
NOT_SENT = BUDGET, BATCH_PENDING, UNCACHED = "budget_exhausted", "batch_pending", "uncached"

ADVICE = {
    CONNECTION: "the server could not be reached: check base_url and that the server is up",
    AUTH: "the server refused the key: check the environment variable the recipe names in api_key_env",
    QUOTA: "the account's quota or credit is spent: top it up or use another key",
    RATE_LIMIT: "the server kept answering 429 (too many requests): lower concurrency or wait",
    SERVER: "the server failed (HTTP 5xx): try again later",
    TIMEOUT: "requests timed out: raise the generator's timeout, or check the server's load",
    BAD_RESPONSE: "the server's answers were not chat completions: check base_url and the model name",
    OTHER: "see the errors in the log",
}

_HTTP = re.compile(r"^http_(\d{3})")


def not_sent(error: str | None) -> str | None:
    """A NOT_SENT kind when a request was held back rather than failed."""
    return next((kind for kind in NOT_SENT if error and error.startswith(kind)), None)


def failure_kind(error: str) -> str:
    """The kind of a request's error, from the cause a backend writes first."""
    text = error.lower()
    status = _HTTP.match(text)
    if status:
        code = int(status.group(1))
        if "insufficient_quota" in text or code == 402:
            return QUOTA
        if code in (401, 403):
            return AUTH
        if code == 429:
            return RATE_LIMIT
        return SERVER if code >= 500 else OTHER
    for prefix, kind in (("connection_error", CONNECTION), ("timeout", TIMEOUT), ("bad_response", BAD_RESPONSE)):
        if text.startswith(prefix):
            return kind
    return OTHER


def describe(failures: dict[str, int]) -> str:
    """'connection 20, auth 1' (most first)."""
    return ", ".join(f"{kind} {n}" for kind, n in sorted(failures.items(), key=lambda item: -item[1]))
