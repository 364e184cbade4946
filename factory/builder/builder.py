"""The build: recipe -> prompts -> generators -> parse -> filters -> dataset, in rounds until targets are met."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import platform
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from factory import interrupts, sandbox
from factory.builder.planner import fixed_round, plan_round, top_up_focus, trim_to_target
from factory.builder.progress import BuildProgress
from factory.corpus import Corpus, load_corpus
from factory.corpus.selection import PassagePicker
from factory.data.real import real_split, split_seed
from factory.embeddings import Embedder
from factory.engines import make_engine
from factory.errors import FactoryError
from factory.eval.choice import judge_stage
from factory.eval.runner import evaluate
from factory.export import EXPORT_DIR, export_run
from factory.filters import build_filter
from factory.filters.base import Filter, FilterContext, FilterResult, weight_spread
from factory.generators import Generator
from factory.generators.base import RunContext
from factory.generators.failures import ADVICE, BATCH_PENDING, BUDGET, UNCACHED, describe, failure_kind, not_sent
from factory.generators.meter import MoneyMeter
from factory.generators.pricing import Price, price_of, table_version
from factory.records import OWN_TEXT, STAGE_FINAL, STAGE_PARSE, STAGE_TARGET, WEIGHT, Completion, Prompt, Record, Rejected
from factory.run.claim import claim
from factory.run.decisions import REJECTED_BY_REVIEWER, REVIEW_STAGE, Verdict, verdicts
from factory.run.manifest import Manifest, ManifestError, load_manifest
from factory.run.store import RunStore, atomic_write_text, read_jsonl, request_key, settle_seeds
from factory.secrets import name_secret_variables, recipe_secret_variables
from factory.spec import RecipeBase
from factory.splits import SPLITS, TRAIN, assign_splits
from factory.tasks import Recipe, make_recipe

log = logging.getLogger(__name__)
# A step run once the run directory is written (the card and the report), with the run's embedder.
AfterBuild = Callable[[Path, Embedder | None], None]
VERSIONED = ("dataset-factory", "datasets", "openai", "pydantic", "torch", "transformers", "llama_cpp_python",
             "sentence-transformers", "scikit-learn", "setfit", "huggingface-hub")


@dataclass
class GeneratorStats:
    """Per-generator counters for the manifest."""

    requests: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    models: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # failed requests by kind (generators/failures.py)
    price: Price | None = None  # None: the model has no known price, so its costs are unknown
    cost_usd: float = 0.0  # requests this build sent
    replies_usd: float = 0.0  # every reply counted, cached ones included: what the rows cost to make

    def add(self, completion: Completion) -> None:
        self.requests += 1
        if completion.error is None and self.price is not None:
            # A reply cached before costs were stored is priced from its tokens.
            cost = completion.cost_usd if completion.cost_usd is not None else self.price.cost(
                completion.prompt_tokens, completion.completion_tokens)
            self.replies_usd += cost
            self.cost_usd += 0.0 if completion.cached else cost
        self.cached += completion.cached
        self.failed += completion.error is not None
        if completion.error is not None:
            self.failures[failure_kind(completion.error)] += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        if not completion.cached:
            self.seconds += completion.seconds
        if completion.model:
            self.models[completion.model] += 1


@dataclass
class ChainResult:
    """The filter chain's output: kept rows, drops, the funnel, and the rows after each stage."""

    kept: list[Record]
    dropped: list[Rejected]
    funnel: list[dict[str, Any]]
    stages: list[tuple[str, list[Record]]]


@dataclass
class BuildResult:
    """What `build()` returns: where the run is and what its manifest says."""

    run_dir: Path
    manifest: Manifest
    output_dir: Path | None = None  # where this build's dataset went: run_dir, or run_dir/partial beside a complete one
    replaced: str | None = None  # the other recipe's run that --force replaced

    @property
    def kept_previous(self) -> bool:
        """True when the build fell short and the run directory keeps the previous complete dataset."""
        return self.output_dir is not None and self.output_dir != self.run_dir

    @property
    def complete(self) -> bool:
        return self.manifest.complete

    @property
    def passing(self) -> bool:
        """False when the recipe's eval gate failed (outputs are written; a push is refused)."""
        return self.manifest.passing


class Builder:
    """One build of one recipe into one run directory. Holds no state beyond the run."""

    def __init__(self, spec: RecipeBase, run_dir: Path, *, progress: bool = True, only_generator: str | None = None,
                 requests_per_bucket: int | None = None, after: Sequence[AfterBuild] = (),
                 generators: Mapping[str, Generator] | None = None, filters: Sequence[Filter] | None = None,
                 embedder: Embedder | None = None, replace: bool = False, no_wait: bool = False,
                 offline: bool = False, run_eval: bool = True) -> None:
        """Store the settings; nothing is read, loaded or fitted until `run()` holds the run's lock.

        `generators` (by name), `filters` (unfitted, in order) and `embedder` replace what the
        recipe would make, for callers that bring their own. `replace`: build even into a run
        directory that holds another recipe's run, replacing it (run/claim.py). `no_wait`: submit
        Batch API jobs and stop; a later build collects them. `offline`: send nothing: a request the cache
        cannot answer is held back, the build stops there (status offline) and its rows replace the run's
        dataset even when short of the targets (export, push and eval apply a person's decisions this way).
        `run_eval`: False leaves the recipe's eval to the caller (`factory eval`, with its own options).
        """
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.only_generator = only_generator
        self.replace = replace
        self.requests_per_bucket = requests_per_bucket
        self.after = tuple(after)
        self.show_progress = progress
        self.engine = make_engine(spec.engine)
        chosen = [g for g in spec.generators if only_generator in (None, g.name)]
        if not chosen:
            raise FactoryError(f"no generator named {only_generator!r}; the recipe has {[g.name for g in spec.generators]}")
        self.generators: dict[str, Generator] = dict(generators) if generators is not None else {
            g.name: self.engine.generator(g) for g in chosen}
        self._generator_params = {g.name: g for g in spec.generators}
        self.meter = MoneyMeter(limit_usd=spec.budget.usd if spec.budget else None)
        self.no_wait = no_wait
        self.offline = offline
        self.run_eval = run_eval
        self.held_back: Counter[str] = Counter()  # requests not sent, by why (generators/failures.py: NOT_SENT)
        self.answers: dict[str, Completion] = {}  # replies to the filters' requests (a judge's verdicts), by request key
        self.stage_costs: dict[int, GeneratorStats] = defaultdict(GeneratorStats)  # those requests, per filter stage
        self._filters = filters
        self._embedder = embedder
        self.targets = spec.buckets()
        self.stats: dict[str, GeneratorStats] = {
            g.name: GeneratorStats(price=price_of(g)) for g in spec.generators}
        self.parsed: dict[tuple[str, int], list[Record | Rejected]] = {}  # a reply may hold several rows (a table batch)
        self.issued: Counter[str] = Counter()
        self._loaded: set[str] = set()
        self.used_keys: set[str] = set()  # request keys this build answered from the cache or stored in it
        self.seen_prompts: Counter[str] = Counter()  # identical prompts so far, for their seeds (settle_seeds)
        self.verdicts: dict[str, Verdict] = {}  # a person's decisions on rows (run/decisions.py), read by run()

    def _prepare(self, fit_filters: bool = True) -> None:
        """Read the real rows, make the recipe and fit the filters (bad data fails here, before any model loads)."""
        name_secret_variables(recipe_secret_variables(self.spec.resolved()))  # scrubbed from all output
        self.real = real_split(self.spec)
        embedder = self._embedder or self.engine.embedder(self.run_dir / "embeddings.sqlite")
        self.corpus: Corpus | None = None
        picker = None
        if self.spec.grounded:  # read, chunk and check the documents before any model loads
            self.corpus = load_corpus(self.spec, self.run_dir / "corpus", self.real.validation)
            picker = PassagePicker(self.corpus, self.spec.grounding, self.spec.seed, list(self.targets), embedder)
        self.recipe: Recipe = make_recipe(self.spec, self.real.train, picker)
        self.context = FilterContext(seed=self.spec.seed, labels=tuple(self.targets), real_train=self.real.train,
                                     real_holdout=[*self.real.validation, *self.recipe.reference_rows()], embedder=embedder,
                                     passages={p.id: p.text for p in self.corpus.passages} if self.corpus else {},
                                     generators=tuple(self._generator_params), answer=self._answer,
                                     answer_fields=self.recipe.answer_fields, reviewed=self._reviewed_rows())
        if not fit_filters:  # the estimate: prompts only
            return
        stages = self._filters if self._filters is not None else [build_filter(p, self.spec.row_shape) for p in self.spec.filters]
        self.filters = [self.engine.stage(stage).fit(self.context) for stage in stages]

    # -- generation -----------------------------------------------------------------------------

    def _generator(self, name: str, load: bool = True) -> Generator:
        if name not in self.generators:  # a judge that is not among the generators of this build (compare)
            if name not in self._generator_params:
                raise FactoryError(f"no generator named {name!r}; the recipe has {list(self._generator_params)}")
            self.generators[name] = self.engine.generator(self._generator_params[name])
        generator = self.generators[name]
        if not load:
            return generator
        if name not in self._loaded:  # load lazily: a fully cached re-run never loads a model
            generator.attach(RunContext(self.meter, self.run_dir / "batches" / name, self.no_wait))
            generator.load()
            self._loaded.add(name)
        return generator

    async def _run_prompts(self, store: RunStore, prompts: list[Prompt], progress: BuildProgress) -> None:
        """Answer `prompts`, then the follow-ups their replies call for (a conversation's next turns), wave by wave."""
        while prompts:
            settle_seeds(prompts, self.seen_prompts, self.recipe.seed_salt)
            # Follow-ups come back in the order their replies finished: sorted, their seeds settle the same on every run.
            prompts = sorted(await self._run_wave(store, prompts, progress), key=lambda p: (p.bucket, p.index))

    async def _run_wave(self, store: RunStore, prompts: list[Prompt], progress: BuildProgress) -> list[Prompt]:
        keyed = [(request_key(self.generators[p.generator].identity(), p), p) for p in prompts]
        cached = store.cache.get_many(k for k, _ in keyed)
        self.used_keys.update(cached)
        pending: dict[str, list[tuple[str, Prompt]]] = defaultdict(list)
        follow_ups: list[Prompt] = []
        hits = [(key, prompt) for key, prompt in keyed if key in cached]
        for key, prompt in keyed:
            if key not in cached:
                pending[prompt.generator].append((key, prompt))
        if self.offline:
            self.held_back[UNCACHED] += sum(len(items) for items in pending.values())
            pending.clear()
        await asyncio.gather(*(self.recipe.examine(prompt, cached[key]) for key, prompt in hits))
        self._flush(store, [row for key, prompt in hits for row in self._accept(key, prompt, cached[key], progress, follow_ups)])

        async def drive(name: str, items: list[tuple[str, Prompt]]) -> None:
            rows: list[Record | Rejected] = []
            flushed = time.monotonic()

            async def finish(key: str, prompt: Prompt, completion: Completion) -> None:
                nonlocal rows, flushed
                await self.recipe.examine(prompt, completion)  # e.g. a solution's tests, while generation goes on
                rows += self._accept(key, prompt, completion, progress, follow_ups)
                # The row logs are rebuilt from the cache on resume, so they flush per batch or second.
                if len(rows) >= self.spec.generate.batch_size or time.monotonic() - flushed > 1.0:
                    self._flush(store, rows)
                    rows, flushed = [], time.monotonic()

            finishing = [asyncio.create_task(finish(key, prompt, completion))
                         async for key, prompt, completion in self._send(store, name, items)]
            await asyncio.gather(*finishing)
            self._flush(store, rows)

        await asyncio.gather(*(drive(name, items) for name, items in pending.items()))
        return follow_ups

    async def _send(self, store: RunStore, name: str,
                    items: Sequence[tuple[str, Prompt]]) -> AsyncIterator[tuple[str, Prompt, Completion]]:
        """(key, prompt, completion) as generator `name` finishes each of `items` (uncached requests)."""
        generator = self._generator(name)
        keys = {id(p): k for k, p in items}
        identity = generator.identity()
        async for prompt, completion in generator.stream([p for _, p in items]):
            key = keys[id(prompt)]
            held = not_sent(completion.error)
            if held:  # never sent (the budget, a batch still running): no row, no failure; a later build sends it
                self.held_back[held] += 1
                continue
            if completion.error is None:
                # Persist before anything else: a finished request is never sent again.
                store.cache.put(key, prompt, identity, completion)
                self.used_keys.add(key)
            yield key, prompt, completion

    def _accept(self, key: str, prompt: Prompt, completion: Completion, progress: BuildProgress,
                follow_ups: list[Prompt]) -> list[Record | Rejected]:
        self.stats[prompt.generator].add(completion)
        rows = self.recipe.parse_rows(prompt, completion, key[:16])
        self.parsed[(prompt.bucket, prompt.index)] = rows  # a conversation's last turn replaces its earlier ones
        following = self.recipe.follow_up(prompt, completion)
        if following is not None:
            follow_ups.append(following)
        progress.request(prompt.bucket, completion, following is not None or any(isinstance(row, Record) for row in rows))
        return rows

    @staticmethod
    def _flush(store: RunStore, rows: Sequence[Record | Rejected]) -> None:
        store.add_records(r for r in rows if isinstance(r, Record))  # rejected rows are written once, at the end

    # -- filtering ------------------------------------------------------------------------------

    def _parsed_in_order(self) -> list[Record | Rejected]:
        """Every parsed row, in the order of the prompts that gave them (index, then bucket)."""
        order = {b: i for i, b in enumerate(self.targets)}
        keys = sorted(self.parsed, key=lambda k: (k[1], order[k[0]]))
        return [row for k in keys for row in self.parsed[k]]

    def _records_in_order(self) -> list[Record]:
        return [row for row in self._parsed_in_order() if isinstance(row, Record)]

    def _reviewed_rows(self) -> list[Record]:
        """Rows a person kept (earlier builds parsed them into generated.jsonl), with the label they gave."""
        if not self.verdicts:
            return []
        rows = {row["id"]: Record.from_json(row) for row in read_jsonl(self.run_dir / "generated.jsonl")}
        return [self._relabelled(rows[i]) for i, v in self.verdicts.items() if v.keep and i in rows]

    def _relabelled(self, row: Record) -> Record:
        """The row with the label a person gave it, if any (and if the recipe still has that label)."""
        verdict = self.verdicts.get(row.id)
        if verdict is None or verdict.label is None or verdict.label == row.label or verdict.label not in self.targets:
            return row
        return dataclasses.replace(row, label=verdict.label, meta={**row.meta, "relabelled_from": row.label})

    async def _filter(self, store: RunStore, records: list[Record]) -> ChainResult:
        chain = ChainResult(records, [], [], [])
        for position, stage in enumerate(self.filters):
            # Only rows that reach the stage are asked about; what the asking cost shows in its funnel entry.
            await self._answer_requests(store, stage, chain.kept, self.stage_costs[position])
            result = stage.apply(chain.kept)
            choice = self._judge(stage, chain.kept, result) if stage.params.auto else None
            if choice is not None and not choice["on"]:  # switched off for this run: its rows pass as they came
                result = FilterResult(list(chain.kept), [], result.stats)
            entry = result.funnel(stage.type, len(chain.kept))
            if choice is not None:
                entry["stats"] = {**entry.get("stats", {}), "auto": choice}
            if self.stage_costs[position].requests:
                cost = _stats_json(self.stage_costs[position])
                for key in ("models_reported", "cost_usd", "replies_usd"):  # judges' money is in the run's total
                    del cost[key]
                entry["stats"] = {**entry.get("stats", {}), "requests": cost}
            chain.funnel.append(entry)
            chain.dropped.extend(result.dropped)
            chain.kept = result.kept
            chain.stages.append((stage.type, result.kept))
        if self.verdicts:
            self._review(chain, records)
        return chain

    def _review(self, chain: ChainResult, records: list[Record]) -> None:
        """A person's decisions, after every filter: a rejected row goes whatever the filters kept, an accepted
        or relabelled one stays, with its new label, whatever they dropped. Decided rows come first, so the trim
        to the target keeps them; the rows that replace the rejected ones come from the next round, as for any
        drop. One stage for all of it, so that the eval's ablation scores the rows with and without them."""
        verdict = self.verdicts
        kept_by_id = {r.id: r for r in chain.kept}
        # A row the filters kept keeps what they gave it (its weight, its scores).
        accepted = [self._relabelled(kept_by_id.get(r.id, r)) for r in records
                    if (v := verdict.get(r.id)) is not None and v.keep]
        restored = {r.id for r in accepted if r.id not in kept_by_id}
        rejected = [r for r in chain.kept if (v := verdict.get(r.id)) is not None and not v.keep]
        kept = accepted + [r for r in chain.kept if r.id not in verdict]
        chain.funnel.append({
            "stage": REVIEW_STAGE, "in": len(chain.kept) + len(restored), "kept": len(kept),
            "dropped": {REJECTED_BY_REVIEWER: len(rejected)} if rejected else {},
            "stats": {"restored": len(restored), "relabelled": sum("relabelled_from" in r.meta for r in accepted)},
        })
        chain.dropped = [d for d in chain.dropped if d.id not in restored] + [
            Rejected.from_record(r, REVIEW_STAGE, REJECTED_BY_REVIEWER, verdict[r.id].note) for r in rejected]
        chain.kept = kept
        chain.stages.append((REVIEW_STAGE, kept))

    def _judge(self, stage: Filter, before: list[Record], result: FilterResult) -> dict[str, Any]:
        """Whether an `auto` stage stays on in this build, judged on the real training rows (eval/choice.py)."""
        return judge_stage(before, result.kept, self.real.train, list(self.targets), embedder=self.context.embeddings(),
                           seed=self.spec.seed)

    def _answer(self, prompt: Prompt) -> Completion | None:
        return self.answers.get(request_key(self._generator(prompt.generator, load=False).identity(), prompt))

    async def _answer_requests(self, store: RunStore, stage: Filter, records: Sequence[Record], cost: GeneratorStats) -> None:
        """Send the stage's requests about `records` that have no reply yet, through the request cache."""
        wanted: dict[str, dict[str, Prompt]] = defaultdict(dict)
        for record in records:
            prompt = stage.request(record)
            if prompt is not None:
                key = request_key(self._generator(prompt.generator, load=False).identity(), prompt)
                if key not in self.answers:
                    wanted[prompt.generator][key] = prompt
        for name, items in wanted.items():
            cached = store.cache.get_many(items)
            self.used_keys.update(cached)
            for key, completion in cached.items():
                self.answers[key] = completion
                self.stats[name].add(completion)
                cost.add(completion)
            missing = [(k, p) for k, p in items.items() if k not in cached]
            if missing and self.offline:  # the stage runs without these replies, as when the money ran out
                self.held_back[UNCACHED] += len(missing)
            elif missing:
                async for key, _, completion in self._send(store, name, missing):
                    self.answers[key] = completion
                    self.stats[name].add(completion)
                    cost.add(completion)

    # -- the run --------------------------------------------------------------------------------

    async def _generate(self, store: RunStore, progress: BuildProgress) -> tuple[str, ChainResult]:
        try:
            return await self._rounds(store, progress)
        finally:
            for name in self._loaded:
                await self.generators[name].aclose()
            self._loaded.clear()

    async def _rounds(self, store: RunStore, progress: BuildProgress) -> tuple[str, ChainResult]:
        """Generate until the targets are met or the budget is spent; the status, and the chain's
        result on every parsed row (the last pass sees them all)."""
        budget = self.spec.request_budget()
        while True:
            chain = await self._filter(store, self._records_in_order())
            self.recipe.observe(chain.kept)
            counts = Counter(self.recipe.bucket(r) for r in chain.kept)
            progress.kept(counts)
            reached = all(counts[b] >= t for b, t in self.targets.items())
            if self.requests_per_bucket is not None:
                # Fixed-request mode (compare): every generator gets exactly the same prompts.
                plan = fixed_round(self.targets, self.issued, self.requests_per_bucket)
                if not plan:
                    return ("complete" if reached else "requests_spent"), chain
            else:
                if reached:
                    return "complete", chain
                ready = {b: t for b, t in self.targets.items() if not self.recipe.waiting(b)}  # a child waits for its parents
                plan = plan_round(ready, counts, self.issued, budget - sum(self.issued.values()),
                                  self.recipe.rows_per_request, self.recipe.requests_per_round)
                if not plan:
                    return "budget_exhausted", chain
            prompts = self._round_prompts(plan, top_up_focus(chain.funnel))
            progress.plan(len(prompts))
            sent, failed = self._sent_and_failed()
            # One stream per round: the generator keeps its concurrency full; rows flush per batch.
            await self._run_prompts(store, prompts, progress)
            stop = self._must_stop()
            if stop is not None:
                return stop, await self._filter(store, self._records_in_order())
            sent_now, failed_now = self._sent_and_failed()
            if sent_now > sent and failed_now - failed == sent_now - sent:
                # Every request of the round failed: the next round would fail the same way, and cost.
                chain = await self._filter(store, self._records_in_order())
                return "requests_failed", chain

    def _round_prompts(self, plan: Mapping[str, int], focus: Mapping[str, list[list[str]]]) -> list[Prompt]:
        """The next prompts of each bucket in `plan`, counted as issued."""
        per_bucket = []
        for bucket, n in plan.items():
            start = self.issued[bucket]
            aims = focus.get(bucket, [])
            per_bucket.append([self.recipe.prompt(bucket, i, self.only_generator, aims[k] if k < len(aims) else ())
                               for k, i in enumerate(range(start, start + n))])
            self.issued[bucket] += n
        # Taken in turns, so that the labels fill together: a build stopped half-way is not one-sided.
        return [p for turn in itertools.zip_longest(*per_bucket) for p in turn if p is not None]

    def first_round(self) -> list[Prompt]:
        """The prompts a fresh build sends first, seeds settled, without sending them (the estimate)."""
        self._prepare(fit_filters=False)
        if self.requests_per_bucket is not None:
            plan = fixed_round(self.targets, {}, self.requests_per_bucket)
        else:
            plan = plan_round({b: t for b, t in self.targets.items() if not self.recipe.waiting(b)}, {}, {},
                              self.spec.request_budget(), self.recipe.rows_per_request, self.recipe.requests_per_round)
        prompts = self._round_prompts(plan, {})
        settle_seeds(prompts, Counter(), self.recipe.seed_salt)
        return prompts

    def _must_stop(self) -> str | None:
        """A status when the next round cannot be sent: the money is spent, a batch is still running, or a
        generator halted (its account's credit is spent)."""
        if self.held_back[BUDGET]:
            return "budget_exhausted"
        if self.held_back[BATCH_PENDING]:
            return "batch_pending"
        if self.held_back[UNCACHED]:
            return "offline"
        if any(self.generators[name].halted for name in self._loaded):
            return "requests_failed"
        return None

    def _sent_and_failed(self) -> tuple[int, int]:
        """Requests sent to a generator so far (not answered from the cache), and those that failed."""
        return (sum(s.requests - s.cached for s in self.stats.values()), sum(s.failed for s in self.stats.values()))

    def run(self) -> BuildResult:
        started = time.time()
        if self.spec.needs_sandbox:  # no request is paid for when the code it brings back cannot run here
            sandbox.check()

        def make_ours(root: Path) -> str | None:  # refuses another recipe's run directory (run/claim.py)
            return claim(root, self.spec.name, self.spec.task, self.spec.source, replace=self.replace)

        with RunStore(self.run_dir, make_ours) as store, BuildProgress(self.targets, enabled=self.show_progress) as progress:
            self.verdicts = verdicts(self.run_dir)
            self.meter.spent_before_usd = store.cache.spent_usd()  # what earlier builds paid counts against the budget
            for name, stats in self.stats.items():
                if stats.price is None and name in self.generators:  # said once, before anything is sent
                    log.warning("generator %r: no price is known for model %r, so its cost is unknown (null); add "
                                "price: {input: USD, output: USD} per million tokens to its recipe entry",
                                name, self._generator_params[name].model)
            self._prepare()
            with interrupts.asyncio_handles_ctrl_c():
                status, chain = asyncio.run(self._generate(store, progress))
            interrupts.check()  # before the dataset is written
            generated_s = time.time() - started
            records = self._records_in_order()
            final, surplus = trim_to_target(chain.kept, self.targets, self.recipe.bucket)
            funnel = [*chain.funnel, {"stage": STAGE_TARGET, "in": len(final) + len(surplus), "kept": len(final),
                                      "dropped": {"over_target": len(surplus)} if surplus else {}}]
            last_check = self.recipe.finalize(final)  # e.g. foreign keys: before anything is written
            if last_check is not None:
                stage, kept, dropped = last_check
                funnel.append(FilterResult(kept, dropped).funnel(stage, len(final)))
                final, surplus = kept, surplus + dropped
            # A build that fell short never replaces a complete dataset: its own goes beside it, in partial/. An
            # offline build does: it applies a person's decisions, which the previous dataset does not honour.
            short = status != "complete" and not self.offline
            out = self.run_dir / PARTIAL_DIR if short and _complete_run(self.run_dir) else self.run_dir
            if out == self.run_dir:
                shutil.rmtree(self.run_dir / PARTIAL_DIR, ignore_errors=True)
            out.mkdir(exist_ok=True)
            parse_drops = [row for row in self._parsed_in_order() if isinstance(row, Rejected)]
            store.write_rejected([*parse_drops, *chain.dropped, *surplus], out)
            store.write_kept(final, out)
            split_report = self._write_dataset(store, final, out)
            stages = [(STAGE_PARSE, records), *chain.stages, (STAGE_FINAL, final)]
            store.write_stages(dict(stages), out)
            manifest = self._manifest(status, records, final, funnel, started, generated_s)
            manifest.stopped = self._stopped(manifest)
            manifest.cache = {"reused": sum(s.cached for s in self.stats.values()),
                              "unused": store.unused_cache_entries(self.used_keys)}
            manifest.splits = split_report
            if out != self.run_dir:  # no export, eval, card or report: those in the run directory stay the complete build's
                store.write_manifest(manifest, out)
                return BuildResult(self.run_dir, manifest, out, store.claimed)
            manifest.exports = export_run(self.run_dir, self.spec.export, self.spec.resolved()) if self.spec.export else None
            for name, text in self.recipe.artifacts().items():  # e.g. a table's accepted program
                atomic_write_text(self.run_dir / name, text)
            store.write_manifest(manifest)
            eval_spec = self.spec.evaluation() if self.run_eval else None
            if eval_spec is not None:
                manifest.eval = evaluate(
                    eval_spec, list(self.targets), self.real.train, self.real.validation, stages,
                    embedder=self.context.embeddings(), seed=split_seed(self.spec),
                    save_dir=self.run_dir / "models" if eval_spec.save_models else None,
                )
                interrupts.check()
                manifest.passing = manifest.eval["gate"]["passed"]
                manifest.timings.total_s = round(time.time() - started, 3)
                store.write_manifest(manifest)
            for step in self.after:  # e.g. the card and the report: the build itself renders nothing
                step(self.run_dir, self.context.embedder)
            interrupts.check()
        return BuildResult(self.run_dir, manifest, self.run_dir, store.claimed)

    def _stopped(self, manifest: Manifest) -> str | None:
        """Why a build that is not complete stopped: failed requests by kind, rejected replies, or the budget."""
        if manifest.complete:
            return None
        failures: Counter[str] = Counter()
        for stats in self.stats.values():
            failures.update(stats.failures)
        rejected = {k: v for k, v in manifest.funnel[0].dropped.items() if k != "request_failed"}
        parts = []
        if failures:
            parts.append(f"{sum(failures.values())} request(s) failed ({describe(failures)}): "
                         f"{ADVICE[failures.most_common(1)[0][0]]}")
        if rejected:
            parts.append(f"{sum(rejected.values())} reply(ies) rejected ({', '.join(f'{k} {v}' for k, v in rejected.items())})")
        filtered = sum(sum(stage.dropped.values()) for stage in manifest.funnel[1:] if stage.stage != STAGE_TARGET)
        if filtered:
            parts.append(f"the filters dropped {filtered} row(s)")
        detail = "; ".join(parts)
        if manifest.status == "requests_failed":
            return f"every request of the last round failed, so the build stopped early: {detail}"
        if manifest.status == "requests_spent":  # compare's fixed number of requests per bucket
            return "every fixed request was sent" + (f": {detail}" if detail else "")
        if manifest.status == "offline":
            return (f"{self.held_back[UNCACHED]} request(s) had no cached reply and were not sent (this command "
                    f"sends none: it applies the review decisions to the replies the run has); run `factory build` "
                    f"to send them" + (f": {detail}" if detail else ""))
        if manifest.status == "batch_pending":
            return (f"{self.held_back[BATCH_PENDING]} request(s) wait in submitted Batch API jobs (their ids are in "
                    f"{self.run_dir / 'batches'}); run the same command again to collect them")
        if self.held_back[BUDGET]:
            meter = self.meter
            return (f"the money budget is spent: ${meter.total_usd:.4f} of ${meter.limit_usd:.2f} "
                    f"(${meter.spent_usd:.4f} by this build); the next request could have cost up to "
                    f"${meter.refused_worst_usd:.4f}, so it was not sent" + (f": {detail}" if detail else "")
                    + "; raise budget.usd or --budget to go on")
        return (f"the request budget ran out ({manifest.budget.used} of {manifest.budget.max_requests} requests)"
                + (f": {detail}" if detail else "") + "; raise generate.max_requests or --max-requests")

    def _write_dataset(self, store: RunStore, final: list[Record], out: Path) -> dict[str, Any] | None:
        """The dataset, in the recipe's splits (train only without `splits:`); the splits' report."""
        held_out = self.spec.splits
        split_of, report = ({}, None) if held_out is None else assign_splits(
            final, self.recipe.bucket, held_out.held_out(), held_out.group_threshold, self.spec.seed, self.recipe.split_text)
        parts = {split: [r for r in final if split_of.get(r.id, TRAIN) == split] for split in SPLITS}
        by_split = {split: self.recipe.dataset_configs(rows) for split, rows in parts.items() if rows or split == TRAIN}
        schemas = self.recipe.dataset_schemas()
        store.write_dataset({config: {split: tables[config] for split, tables in by_split.items()} for config in schemas},
                            schemas, out)
        shutil.rmtree(out / EXPORT_DIR, ignore_errors=True)  # files of an earlier dataset would mislead
        return report

    def _manifest(self, status: str, records: list[Record], final: list[Record], funnel: list[dict[str, Any]],
                  started: float, generated_s: float) -> Manifest:
        parsed = [row for rows in self.parsed.values() for row in rows]
        parse_drops = Counter(r.reason for r in parsed if isinstance(r, Rejected))
        final_counts = Counter(self.recipe.bucket(r) for r in final)
        return Manifest.model_validate({
            "name": self.spec.name,
            "status": status,
            "recipe_hash": self.spec.hash(),
            "recipe": self.spec.resolved(),
            "recipe_dir": str(self.spec.base_dir),
            # With a gate, a run passes only once its eval has said so.
            "passing": not ((eval_spec := self.spec.evaluation()) and eval_spec.gate),
            "versions": _versions(),
            "embeddings": self.context.embeddings().describe(),
            "engine": self.engine.describe(),
            "generators": [
                {**self.generators[name].describe(), **_stats_json(self.stats[name])} for name in self.generators
            ],
            "targets": self.targets,
            "progress": {b: {"target": t, "kept": final_counts[b], "reached": final_counts[b] >= t,
                             "requests": self.issued[b]} for b, t in self.targets.items()},
            "budget": {"max_requests": self.spec.request_budget(), "used": sum(self.issued.values())},
            "funnel": [
                {"stage": STAGE_PARSE, "in": len(parsed), "kept": len(records), "dropped": dict(sorted(parse_drops.items()))},
                *funnel,
            ],
            "rows": len(final),
            "corpus": self._corpus_stats(final),
            "kind_report": self.recipe.report(final),
            "own_text_rows": sum(bool(r.meta.get(OWN_TEXT)) for r in final),
            "weights": weight_spread(final, self.recipe.bucket) if any(r.meta.get(WEIGHT, 1.0) != 1.0 for r in final) else None,
            "cost": self._cost(len(final)),
            "review": self._review_counts(records) if self.verdicts else None,
            "fixed_requests": None if self.requests_per_bucket is None else {
                "generator": self.only_generator, "requests_per_bucket": self.requests_per_bucket},
            "tokens": {
                "prompt": sum(s.prompt_tokens for s in self.stats.values()),
                "completion": sum(s.completion_tokens for s in self.stats.values()),
            },
            "timings": {"generation_s": round(generated_s, 3), "total_s": round(time.time() - started, 3),
                        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))},
        })

    def _review_counts(self, records: list[Record]) -> dict[str, int]:
        """How many of this run's rows a person decided on, and how (the card says so only when any did)."""
        decided = [self.verdicts[r.id] for r in records if r.id in self.verdicts]
        return {"decisions": sum(v.decisions for v in self.verdicts.values()), "reviewed": len(decided),
                "accepted": sum(v.keep and v.label is None for v in decided),
                "rejected": sum(not v.keep for v in decided), "relabelled": sum(v.label is not None for v in decided)}

    def _cost(self, kept: int) -> dict[str, Any]:
        """The money: the dataset's, per kept row, this build's and the run's, against the budget."""
        used = [s for s in self.stats.values() if s.requests]
        unpriced = [name for name, s in self.stats.items() if s.requests and s.price is None]
        dataset = None if unpriced else round(sum(s.replies_usd for s in used), 6)
        return {"dataset_usd": dataset, "per_kept_row_usd": round(dataset / kept, 8) if dataset is not None and kept else None,
                "this_build_usd": None if unpriced else round(self.meter.spent_usd, 6),
                "run_total_usd": round(self.meter.total_usd, 6),
                "budget_usd": self.meter.limit_usd, "refused_requests": self.held_back[BUDGET],
                "unpriced": unpriced, "price_table": table_version()}

    def _corpus_stats(self, final: list[Record]) -> list[dict[str, Any]] | None:
        if self.corpus is None:
            return None
        distinct = {(r.meta.get("source_index"), r.meta.get("passage_id")) for r in final if r.meta.get("passage_id")}
        used = Counter(index for index, _ in distinct)
        return [{**s, "used": used[k]} for k, s in enumerate(self.corpus.describe())]


def _stats_json(stats: GeneratorStats) -> dict[str, Any]:
    return {
        "requests": stats.requests, "cached": stats.cached, "failed": stats.failed, "failures": dict(stats.failures),
        "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
        "seconds": round(stats.seconds, 3), "models_reported": dict(stats.models),
        "cost_usd": round(stats.cost_usd, 6) if stats.price else None,
        "replies_usd": round(stats.replies_usd, 6) if stats.price else None,
    }


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in VERSIONED:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


PARTIAL_DIR = "partial"  # a build that fell short, beside the complete dataset it did not replace


def _complete_run(run_dir: Path) -> bool:
    """True when the run directory holds the dataset of a complete build."""
    try:
        return load_manifest(run_dir).complete and (run_dir / "dataset").is_dir()
    except ManifestError:
        return False


def default_run_dir(spec: RecipeBase) -> Path:
    return Path("runs") / spec.name
