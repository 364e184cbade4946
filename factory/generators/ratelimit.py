"""Client-side rate limits for a paid API: requests and tokens per minute, and an adaptive concurrency.

Two continuously refilled buckets (requests, tokens) hold back a request until the account can take
it, as the provider counts: one request, and its prompt + max_tokens tokens. Their sizes come from the
recipe (`rpm`, `tpm`) or are learned from the `x-ratelimit-*` headers on every response, which also
pull a bucket down to what the server says remains (other clients share the account). A 429 pauses
every request until its Retry-After and halves the concurrency window; each success widens it by
1/window again (AIMD, as TCP does), up to the recipe's `concurrency`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str) -> float | None:
    """OpenAI's reset durations ('1s', '6m0s', '120ms', '1.5s') in seconds; None when unreadable."""
    parts = _DURATION.findall(value.strip())
    if not parts:
        try:
            return float(value)
        except ValueError:
            return None
    return sum(float(number) * _SECONDS[unit] for number, unit in parts)


class Bucket:
    """A token bucket: `capacity` units, refilled at capacity per `period` seconds."""

    def __init__(self, capacity: float, period: float = 60.0, level: float | None = None) -> None:
        self.capacity = capacity
        self.period = period
        self.level = capacity if level is None else level
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.capacity / self.period)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` units are there (0 when they are). More than the capacity waits for a full bucket."""
        self._refill()
        need = min(amount, self.capacity) - self.level
        return max(need, 0.0) * self.period / self.capacity

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= min(amount, self.capacity)

    def sync(self, capacity: float | None, remaining: float | None) -> None:
        """Adopt the server's view: its limit, and no more than what it says remains."""
        self._refill()
        if capacity:
            self.capacity = capacity
        if remaining is not None:
            self.level = min(self.level, remaining)


class RateLimiter:
    """Admits requests of one generator under RPM, TPM and an AIMD concurrency window."""

    def __init__(self, concurrency: int, rpm: int | None = None, tpm: int | None = None, period: float = 60.0) -> None:
        self.most = concurrency
        self.window = float(concurrency)
        self.period = period
        self.requests = Bucket(rpm, period) if rpm else None
        self.tokens = Bucket(tpm, period) if tpm else None
        self.configured = {"rpm": rpm, "tpm": tpm}
        self.learned: dict[str, float] = {}
        self.in_flight = 0
        self.paused_until = 0.0
        self.rate_limited = 0  # 429s seen
        self._changed = asyncio.Event()

    async def enter(self) -> None:
        """Wait for a slot in the concurrency window; a request holds it through its retries."""
        while self.in_flight >= int(self.window):
            await self._wait(None)
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        self._changed.set()

    async def take(self, tokens: int) -> None:
        """Wait until one attempt of `tokens` (prompt + max_tokens) may go, and count it: a request, the tokens."""
        while True:
            wait = max(self.paused_until - time.monotonic(),
                       self.requests.wait_for(1) if self.requests else 0.0,
                       self.tokens.wait_for(tokens) if self.tokens else 0.0)
            if wait <= 0:
                break
            await self._wait(wait)
        if self.requests:
            self.requests.take(1)
        if self.tokens:
            self.tokens.take(tokens)

    async def _wait(self, seconds: float | None) -> None:
        """Until `seconds` pass or the window changes (a slot freed, limits learned)."""
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def succeeded(self) -> None:
        """Additive increase: one more request in flight per window's worth of successes."""
        self.window = min(float(self.most), self.window + 1.0 / self.window)
        self._changed.set()

    def limited(self, retry_after: float | None) -> None:
        """A 429: halve the window, and hold every request until the server's Retry-After has passed."""
        self.rate_limited += 1
        self.window = max(1.0, self.window / 2)
        if retry_after is not None:
            self.paused_until = max(self.paused_until, time.monotonic() + retry_after)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the limits and the remaining allowance from a response's x-ratelimit-* headers."""
        for kind, unit in (("requests", "rpm"), ("tokens", "tpm")):
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if limit is None and remaining is None:
                continue
            bucket = getattr(self, kind)
            if bucket is None and limit:
                bucket = Bucket(limit, self.period, level=remaining)
                setattr(self, kind, bucket)
            elif bucket is not None:
                # The recipe's own limit wins when it is lower: it may be a share of the account for this run.
                configured = self.configured[unit]
                bucket.sync(min(limit, configured) if limit and configured else limit, remaining)
            if limit:
                self.learned[unit] = limit

    def describe(self) -> dict[str, object]:
        return {"rpm": self.requests.capacity if self.requests else None,
                "tpm": self.tokens.capacity if self.tokens else None,
                "learned": dict(self.learned), "rate_limited": self.rate_limited, "window": round(self.window, 2)}


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
