"""manifest.json: the one typed record of a run, written by the build and read by everything after it.

The card, the report, compare, `factory eval` and `factory push` read a run through `load_manifest`
and nothing else. Every manifest carries `schema_version`; one this version cannot read fails with a
message that names both versions and what to do. The parts that belong to one stage and grow with it
(a filter's `stats`, the eval's scores, a generator's settings) stay plain JSON objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from factory.errors import FactoryError

# 1: the first typed manifest (December 2026). Before it, manifests had no schema_version; they have
# the same fields and load as version 1.
SCHEMA_VERSION = 1
# requests_failed: every request of a round failed (the server is down, the key refused), so the build
# stopped rather than spend its budget on a dead endpoint. batch_pending: requests wait in a submitted
# Batch API job (`--no-wait`); the next build collects them. offline: a build that sends nothing (export, push
# and eval applying review decisions) needed a reply the cache did not have; `factory build` sends it.
Status = Literal["complete", "budget_exhausted", "requests_spent", "requests_failed", "batch_pending", "offline"]


class ManifestError(FactoryError):
    """manifest.json is missing, unreadable, or of a schema this version cannot read."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class BucketProgress(_Part):
    """How far one bucket (label) got."""

    target: int
    kept: int
    reached: bool
    requests: int


class Budget(_Part):
    max_requests: int
    used: int


class FunnelStage(_Part):
    """Rows into and out of one stage (parse, each filter, the target trim), with the drop reasons."""

    stage: str
    rows_in: int = Field(alias="in")
    kept: int
    dropped: dict[str, int]
    stats: dict[str, Any] | None = None


class Cost(_Part):
    """Money, in USD, from each request's price (generators/pricing.py); None where a price is unknown."""

    dataset_usd: float | None  # every reply behind this build's rows, cached ones included (each was paid once)
    per_kept_row_usd: float | None
    this_build_usd: float | None  # requests sent by this build
    run_total_usd: float  # everything the run directory's cache holds: what the budget counts
    budget_usd: float | None
    refused_requests: int = 0  # not sent: their worst case did not fit the budget
    unpriced: list[str] = Field(default_factory=list)  # generators whose model has no known price
    price_table: dict[str, str]  # which table priced it: source, litellm_version, date

    def sentence(self) -> str:
        """What the rows cost, in one sentence for the card and the report."""
        table = f"prices: the recipe's, else litellm's price map {self.price_table['litellm_version']} of {self.price_table['date']}"
        if self.dataset_usd is None:
            return (f"Cost: unknown: no price is known for {', '.join(self.unpriced)} ({table}).")
        per_row = f", ${self.per_kept_row_usd:.6f} per kept row" if self.per_kept_row_usd is not None else ""
        budget = f"; budget ${self.budget_usd:.2f}, ${self.run_total_usd:.4f} spent in all" if self.budget_usd else ""
        return f"Cost: ${self.dataset_usd:.4f} of requests behind these rows{per_row}{budget} ({table})."


class Tokens(_Part):
    prompt: int
    completion: int


class Timings(_Part):
    generation_s: float
    total_s: float
    started: str


class CorpusSource(_Part):
    """What one `sources:` entry gave the run (names within the source, never its contents)."""

    label: str
    documents: int
    passages: int
    duplicates: int = 0
    too_short: int = 0
    validation_overlap: int = 0
    problems: list[dict[str, str]] = Field(default_factory=list)
    used: int = 0  # distinct passages behind the final rows


class Manifest(_Part):
    """A finished (or budget-limited) run: the resolved recipe, what ran, the funnel and the scores."""

    schema_version: int = SCHEMA_VERSION
    name: str
    status: Status
    recipe_hash: str
    recipe: dict[str, Any]
    recipe_dir: str
    passing: bool = True
    versions: dict[str, str]
    embeddings: dict[str, str] | None = None
    engine: dict[str, Any] | None = None  # where it ran: local, or Ray with its workers and steps
    generators: list[dict[str, Any]]
    targets: dict[str, int]
    progress: dict[str, BucketProgress]
    budget: Budget
    funnel: list[FunnelStage]
    rows: int
    tokens: Tokens
    timings: Timings
    eval: dict[str, Any] | None = None
    corpus: list[CorpusSource] | None = None
    # What the task kind measured on its final rows (a table: its checks and its fidelity to the real
    # table); each kind documents its own keys and renders them (`Recipe.card_section`).
    kind_report: dict[str, Any] | None = None
    splits: dict[str, Any] | None = None  # the held-out splits' rows per bucket and groups (factory.splits)
    exports: dict[str, Any] | None = None  # the fine-tuning files written, per format (factory.export)
    # Why a build that is not complete stopped, in a sentence (failed requests by kind, rejected replies).
    stopped: str | None = None
    # The request cache: replies this build reused, and replies in the cache it did not use (an edit
    # changed their prompts, or they belong to targets no longer asked for).
    cache: dict[str, int] | None = None
    # The final rows that are the user's own text, labelled but not written by a model (records.OWN_TEXT).
    own_text_rows: int = 0
    # Per bucket, the final rows' weights (rows, mean, p10/p50/p90), when some row weighs less than 1.
    weights: dict[str, dict[str, Any]] | None = None
    cost: Cost | None = None
    # A person's decisions (factory review, run/decisions.py) applied by this build: how many rows were
    # reviewed, accepted, rejected and relabelled; None when nobody reviewed the run.
    review: dict[str, int] | None = None
    # compare's fixed-request mode ({"generator": name, "requests_per_bucket": n}), so that a later build of this
    # run (export applying review decisions) makes the same requests; None for a build of the recipe.
    fixed_requests: dict[str, Any] | None = None

    @property
    def task(self) -> str:
        return str(self.recipe["task"])

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def hub(self) -> dict[str, Any]:
        """The recipe's hub: section ({} without one)."""
        return self.recipe.get("hub") or {}

    def to_json(self) -> str:
        # Optional sections are left out rather than written as null, as they always were.
        data = self.model_dump(mode="json", by_alias=True)
        for key in ("embeddings", "eval", "kind_report", "stopped"):
            if data[key] is None:
                del data[key]
        for stage in data["funnel"]:
            if stage["stats"] is None:
                del stage["stats"]
        return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def load_manifest(run_dir: Path) -> Manifest:
    """The run's manifest, validated. Raises ManifestError with the file and the problem."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise ManifestError(f"{run_dir} is not a finished run: manifest.json is missing (run `factory build` first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path} is not a run manifest")
    version = data.get("schema_version", 1)
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise ManifestError(
            f"{path} has manifest schema version {version}, and this dataset-factory reads version {SCHEMA_VERSION}: "
            + ("upgrade dataset-factory to read it" if newer else "build the run again with this version")
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ManifestError(f"{path} (schema version {version}) is not a valid manifest: {where}: {error['msg']}") from None
