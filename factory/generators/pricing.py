"""What a request costs: a price per million tokens, from the recipe or from the shipped price table.

The table (`model_prices.json`, beside this module) is a dated subset of litellm's model price map;
`scripts/refresh_prices.py` regenerates it, and its date and version go into every manifest. A price
in the recipe wins over the table. A model found in neither has no price: its cost is None (unknown),
never 0. Local backends cost no money, and say so with a price of zero from the source "local".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("model_prices.json")
MILLION = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens, with the Batch API's prices where they differ, and where it came from."""

    input: float
    output: float
    batch_input: float | None = None
    batch_output: float | None = None
    source: str = "recipe"  # "recipe", "table" (model_prices.json) or "local"

    def cost(self, prompt_tokens: int, completion_tokens: int, batch: bool = False) -> float:
        """USD for one request. A batch request pays the batch price, else the regular one (never less)."""
        rate_in = self.batch_input if batch and self.batch_input is not None else self.input
        rate_out = self.batch_output if batch and self.batch_output is not None else self.output
        return (prompt_tokens * rate_in + completion_tokens * rate_out) / MILLION

    def describe(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "batch_input": self.batch_input,
                "batch_output": self.batch_output, "source": self.source}


FREE = Price(0.0, 0.0, 0.0, 0.0, source="local")


@cache
def _table() -> dict[str, Any]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def table_version() -> dict[str, str]:
    """Which price table priced the run: its source, the litellm version it was taken from and its date."""
    table = _table()
    return {"source": table["source"], "litellm_version": table["litellm_version"], "date": table["date"]}


def lookup(model: str) -> Price | None:
    """The table's price for a model name as an API knows it ('gpt-4o-mini', 'deepseek/deepseek-chat').

    A name with a provider prefix the table does not spell ('openai/gpt-4o-mini') is tried without it."""
    models = _table()["models"]
    for name in (model, model.split("/", 1)[-1]):
        entry = models.get(name)
        if entry is not None:
            return Price(entry["input"], entry["output"], entry.get("batch_input"), entry.get("batch_output"), source="table")
    return None


def price_of(params: Any) -> Price | None:
    """A generator's price: the recipe's, else the table's for a server's model; local backends are free."""
    from factory.generators.params import OpenAIParams

    if not isinstance(params, OpenAIParams):
        return FREE
    if params.price is not None:
        spec = params.price
        return Price(spec.input, spec.output, spec.batch_input, spec.batch_output, source="recipe")
    return lookup(params.model)
