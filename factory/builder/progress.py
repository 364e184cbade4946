"""A progress bar for long builds: requests, rows kept per label, tokens/s."""

from __future__ import annotations

import sys
import time
from collections import Counter

from factory.records import Completion


class BuildProgress:
    """tqdm bar over requests with kept-per-label and tokens/s in the postfix; silent when disabled."""

    def __init__(self, targets: dict[str, int], *, enabled: bool = True) -> None:
        self.targets = targets
        self.enabled = enabled
        self._bar = None
        self._kept: Counter[str] = Counter()
        self._workers: Counter[str] = Counter()  # replies per engine worker (Ray), for throughput per worker
        self._new_tokens = 0
        self._started = time.perf_counter()

    def __enter__(self) -> BuildProgress:
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=0, unit="req", desc="requests", file=sys.stderr, dynamic_ncols=True, miniters=1, mininterval=0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def plan(self, n: int) -> None:
        if self._bar is not None:
            self._bar.total += n
            self._bar.refresh()

    def kept(self, counts: Counter[str]) -> None:
        self._kept = Counter(counts)
        self._show()

    def request(self, bucket: str, completion: Completion, accepted: bool) -> None:
        if not completion.cached:
            self._new_tokens += completion.completion_tokens
        if accepted:
            self._kept[bucket] += 1  # provisional until the next filter pass
        if completion.worker:
            self._workers[completion.worker] += 1
        if self._bar is not None:
            self._bar.update(1)
            self._show()

    def _show(self) -> None:
        if self._bar is None:
            return
        rate = self._new_tokens / max(time.perf_counter() - self._started, 1e-9)
        kept = " ".join(f"{b}={min(self._kept[b], t)}/{t}" for b, t in self.targets.items())
        workers = ""
        if self._workers:
            elapsed = max(time.perf_counter() - self._started, 1e-9)
            workers = " | " + " ".join(f"{w}: {n / elapsed:.1f}/s" for w, n in sorted(self._workers.items()))
        self._bar.set_postfix_str(f"{kept} | {rate:.0f} tok/s{workers}", refresh=False)
