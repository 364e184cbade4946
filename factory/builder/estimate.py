"""`factory build --estimate`: what a build would send and what it would cost, sending nothing.

The first round's prompts are built exactly as the build builds them, so their prompt tokens are
exact when the generator names a tokenizer. Completion tokens can only be assumed: the mean of this
run's cached replies when there are enough, else the kind's typical reply from the recipe's
examples, else half of max_tokens; the estimate says which. The dollars are a range: the first round
at the assumed reply length, and the most the build could spend (every request the request budget
allows, each reply max_tokens long), capped by the money budget.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.builder.builder import Builder, default_run_dir
from factory.generators import build_generator
from factory.generators.params import OpenAIParams
from factory.generators.pricing import Price, price_of
from factory.generators.tokens import PromptCounter
from factory.records import Prompt
from factory.run.store import RequestCache, request_key
from factory.spec import RecipeBase

MIN_MEASURED = 5  # cached replies needed before their mean beats the recipe's examples


@dataclass
class GeneratorEstimate:
    """One generator's share of the first round, its tokens and its price."""

    name: str
    model: str
    requests: int
    cached: int
    prompt_tokens: int
    counted_with: str
    completion_tokens_each: int
    assumed_because: str
    max_tokens: int
    price: Price | None
    batch: bool

    def usd(self, requests: int, prompt_tokens: int, completion_each: int) -> float | None:
        if self.price is None:
            return None
        return self.price.cost(prompt_tokens, requests * completion_each, self.batch)

    def to_json(self, most_requests: int, budget_usd: float | None) -> dict[str, Any]:
        sent = self.requests - self.cached
        mean_prompt = self.prompt_tokens / sent if sent else 0.0
        likely = self.usd(sent, self.prompt_tokens, self.completion_tokens_each)
        most = self.usd(most_requests, math.ceil(mean_prompt * most_requests), self.max_tokens)
        if most is not None and budget_usd is not None:
            most = min(most, budget_usd)
        return {
            "generator": self.name, "model": self.model, "requests": self.requests, "cached": self.cached,
            "most_requests": most_requests, "prompt_tokens": self.prompt_tokens, "counted_with": self.counted_with,
            "completion_tokens_each": self.completion_tokens_each, "assumed_because": self.assumed_because,
            "completion_tokens": sent * self.completion_tokens_each, "max_tokens": self.max_tokens,
            "price": self.price.describe() if self.price else None, "batch": self.batch,
            "usd": {"first_round": likely, "at_most": most},
        }


def estimate(spec: RecipeBase, run_dir: Path | None = None) -> dict[str, Any]:
    """The estimate as data: per generator, the first round's requests, tokens and dollars."""
    run_dir = Path(run_dir) if run_dir else default_run_dir(spec)
    builder = Builder(spec, run_dir, progress=False)
    prompts = builder.first_round()
    params_of = {g.name: g for g in spec.generators}
    cache_path = run_dir / "requests.sqlite"
    cache = RequestCache(cache_path) if cache_path.is_file() else None
    try:
        by_generator: dict[str, list[Prompt]] = defaultdict(list)
        for prompt in prompts:
            by_generator[prompt.generator].append(prompt)
        share = {name: len(group) / len(prompts) for name, group in by_generator.items()} if prompts else {}
        out = []
        for name, group in by_generator.items():
            params = params_of[name]
            generator = build_generator(params)
            counter = _counter(params)
            keys = [request_key(generator.identity(), p) for p in group]
            cached = cache.get_many(keys) if cache else {}
            fresh = [p for k, p in zip(keys, group) if k not in cached]
            each, because = _assumed_completion(builder, params, group, counter, cache, generator.identity())
            one = GeneratorEstimate(
                name=name, model=params.model, requests=len(group), cached=len(cached),
                prompt_tokens=sum(counter.count(p.messages) for p in fresh), counted_with=counter.method,
                completion_tokens_each=each, assumed_because=because, max_tokens=params.max_tokens,
                price=price_of(params), batch=isinstance(params, OpenAIParams) and params.mode == "batch")
            out.append(one.to_json(math.ceil(spec.request_budget() * share[name]), spec.budget.usd if spec.budget else None))
    finally:
        if cache is not None:
            cache.close()
    return {"recipe": spec.name, "run_dir": str(run_dir), "generators": out,
            "budget_usd": spec.budget.usd if spec.budget else None,
            "not_counted": "follow-up turns (conversations, annotation votes), judge requests and top-up rounds beyond "
                           "the request budget's bound"}


def _counter(params: Any) -> PromptCounter:
    if isinstance(params, OpenAIParams):
        return PromptCounter(params.tokenizer)
    from factory.generators.catalog import CATALOG

    return PromptCounter(params.model if params.model in CATALOG else None)


def _assumed_completion(builder: Builder, params: Any, group: list[Prompt], counter: PromptCounter,
                        cache: RequestCache | None, identity: dict[str, Any]) -> tuple[int, str]:
    """Completion tokens per request, and why: measured on cached replies, the recipe's examples, or a guess."""
    if cache is not None:
        replies = [c for c in cache.get_many(request_key(identity, p) for p in group).values() if c.completion_tokens]
        if len(replies) >= MIN_MEASURED:
            mean = sum(c.completion_tokens for c in replies) / len(replies)
            return math.ceil(mean), f"the mean of {len(replies)} replies of this run's cache"
    lengths: dict[str, float] = {}  # the mean tokens of each bucket's example replies
    for bucket in {p.bucket for p in group}:
        replies = builder.recipe.typical_replies(bucket)
        if replies:
            lengths[bucket] = sum(counter.count_text(r) for r in replies) / len(replies)
    if lengths:
        mean = sum(lengths.get(p.bucket, 0.0) for p in group) / sum(p.bucket in lengths for p in group)
        return min(math.ceil(mean), params.max_tokens), ("the recipe's examples as replies (a model may write longer: "
                                                         "send a pilot with --max-requests 10 to measure it)")
    return params.max_tokens // 2, "half of max_tokens (this kind gives no typical reply)"


def _usd(value: float | None) -> str:
    return "unknown (no price)" if value is None else f"${value:.4f}"


def format_estimate(data: dict[str, Any]) -> str:
    """The estimate as the terminal shows it."""
    lines = [f"estimate for {data['recipe']} (nothing was sent):"]
    for g in data["generators"]:
        price = g["price"]
        where = "no known price" if price is None else (
            f"{price['input']} / {price['output']} USD per million tokens ({price['source']})"
            + (", batch prices" if g["batch"] else ""))
        lines += [
            f"  {g['generator']} ({g['model']}; {where}):",
            f"    requests: {g['requests']} in the first round ({g['cached']} answered from the cache); at most "
            f"{g['most_requests']} (the request budget) if the filters keep asking for more",
            f"    prompt tokens: {g['prompt_tokens']:,}, counted with {g['counted_with']}",
            f"    completion tokens: {g['completion_tokens']:,} ({g['completion_tokens_each']} a request, assumed from "
            f"{g['assumed_because']}; max_tokens {g['max_tokens']})",
            f"    cost: {_usd(g['usd']['first_round'])} for the first round; at most {_usd(g['usd']['at_most'])}"
            + (f" (the budget caps it at ${data['budget_usd']:.2f})" if data["budget_usd"] else ""),
        ]
    lines.append(f"  not counted: {data['not_counted']}")
    return "\n".join(lines)
