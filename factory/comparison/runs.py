"""Each generator's run of a comparison: the same fixed prompts, built through `factory.build`, read back."""


from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from factory.errors import FactoryError
from factory.generators import build_generator
from factory.generators.base import GeneratorParams
from factory.records import STAGE_FINAL, Completion, Prompt, Record, Rejected
from factory.run.manifest import Manifest, load_manifest
from factory.run.store import RequestCache, request_key, settle_seeds
from factory.spec import RecipeBase
from factory.tasks import Recipe

log = logging.getLogger(__name__)

TOP_UP = 1.05  # default requests per label: ceil(1.05 x target), a build's first round


def default_out(spec: RecipeBase) -> Path:
    return Path("runs") / f"{spec.name}-compare"


def run_dir_name(generator: str) -> str:
    """A generator's folder under the compare directory (a model path in a default name must not nest folders)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", generator).strip("._") or "generator"


def default_requests(spec: RecipeBase) -> int:
    """ceil(1.05 x the largest per-bucket target): the first round of a normal build."""
    return math.ceil(TOP_UP * max(spec.buckets().values()))


def chosen_generators(spec: RecipeBase, names: Sequence[str] | None) -> list[GeneratorParams]:
    """The recipe's generators, or those named (in the order given); an unknown name is an error."""
    by_name = {g.name: g for g in spec.generators}
    if not names:
        return list(by_name.values())
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise FactoryError(f"no generator named {', '.join(map(repr, unknown))}; the recipe has {list(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]


def fixed_prompts(recipe: Recipe, spec: RecipeBase, generator: str, requests: int) -> list[Prompt]:
    """The prompts fixed-request mode sends: 0..N-1 of every bucket, in one round and so with no top-up focus."""
    prompts = [recipe.prompt(bucket, i, generator) for bucket in spec.buckets() for i in range(requests)]
    settle_seeds(prompts, Counter(), recipe.seed_salt)  # as the build settles them: one wave, in this order
    return prompts


@dataclass
class GeneratorRun:
    """One generator's finished run, read back from its directory: one row per request, in prompt order."""

    params: GeneratorParams
    run_dir: Path
    manifest: Manifest
    prompts: list[Prompt]
    rows: list[Record | Rejected]  # the parsed row, or why the reply was rejected at parse time
    completions: list[Completion | None]  # None: the request failed, so nothing was cached
    final: list[Record]

    @property
    def name(self) -> str:
        return self.params.name

    @property
    def parsed(self) -> list[Record]:
        return [r for r in self.rows if isinstance(r, Record)]


def load_run(params: GeneratorParams, run_dir: Path, recipe: Recipe, prompts: list[Prompt]) -> GeneratorRun:
    """Re-read a run from its request cache (re-parsing is cheap and exact: the ids are the build's own).

    The row logs are append-only and may hold rows of an earlier recipe or a larger N; the cache,
    looked up by this recipe's request keys, holds exactly this comparison's replies.
    """
    identity = build_generator(params).identity()
    keys = [request_key(identity, p) for p in prompts]
    cache = RequestCache(run_dir / "requests.sqlite")
    try:
        found = cache.get_many(keys)
    finally:
        cache.close()
    completions = [found.get(k) for k in keys]
    rows = [recipe.parse(p, c or Completion("", error="no reply: the request failed"), k[:16])
            for k, p, c in zip(keys, prompts, completions)]
    stages = json.loads((run_dir / "stages.json").read_text(encoding="utf-8"))
    by_id = {r.id: r for r in rows if isinstance(r, Record)}
    final = [by_id[i] for i in stages[STAGE_FINAL] if i in by_id]
    return GeneratorRun(params, run_dir, load_manifest(run_dir), prompts, rows, completions, final)


