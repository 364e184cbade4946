"""A hard money budget shared by a build's generators: reserve the worst case, then settle the actual.

Before a request is sent, its worst case (its prompt's token bound + max_tokens, at its price) is
reserved; a request whose reservation would take spent + reserved past the budget is not sent. When
the reply comes back its actual cost replaces the reservation. Everything runs on the build's one
event loop, so a check and its reservation happen with no await between them and need no lock.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class MoneyMeter:
    """Spend of one run directory: what earlier builds spent, what this one spent, and what is in flight."""

    limit_usd: float | None = None
    spent_before_usd: float = 0.0  # replies already in the run's cache, paid for by earlier builds
    spent_usd: float = 0.0  # this build
    reserved_usd: float = 0.0
    refused: int = 0  # requests not sent because their worst case did not fit
    refused_worst_usd: float = field(default=0.0)  # the smallest worst case refused: what the next request needed
    _settled: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def total_usd(self) -> float:
        return self.spent_before_usd + self.spent_usd

    @property
    def exhausted(self) -> bool:
        """True once a request was refused: the budget stopped the build."""
        return self.refused > 0

    async def admit(self, worst_usd: float) -> bool:
        """Reserve `worst_usd` once it fits under the limit; False (nothing reserved) when it never can.

        A request that fits only once the requests in flight have settled (they usually cost far less
        than their worst case) waits for them rather than being refused."""
        while self.limit_usd is not None and self.total_usd + self.reserved_usd + worst_usd > self.limit_usd + 1e-12:
            if self.total_usd + worst_usd > self.limit_usd + 1e-12 or not self.reserved_usd:
                self.refused += 1
                self.refused_worst_usd = min(self.refused_worst_usd or worst_usd, worst_usd)
                return False
            self._settled.clear()
            await self._settled.wait()
        self.reserved_usd += worst_usd
        return True

    def hold(self, worst_usd: float) -> None:
        """Reserve money already committed (a batch an earlier build submitted): it is spent whatever the limit says."""
        self.reserved_usd += worst_usd

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Replace a reservation by what the request cost (0 for a request that failed unbilled)."""
        self.reserved_usd = max(self.reserved_usd - reserved_usd, 0.0)
        self.spent_usd += actual_usd
        self._settled.set()

    def describe(self) -> dict[str, float | int | None]:
        return {"usd": self.limit_usd, "spent_usd": round(self.total_usd, 6), "this_build_usd": round(self.spent_usd, 6),
                "refused_requests": self.refused}
