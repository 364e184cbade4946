"""The recipe fields every task kind shares (plain pydantic models, importing no kind).

Each task kind (factory/tasks/) declares its own spec model on `RecipeBase`; reading a recipe file
and picking the kind's model by `task:` is factory/recipe_file.py's job.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from factory.eval.names import LINEAR
from factory.eval.params import EVALUATOR_PARAMS, EvaluatorName
from factory.filters import TEXT, FilterSpec, filters_for
from factory.generators.params import ALL_PARAMS, LlamaCppParams
from factory.secrets import EnvVarName

GeneratorSpec = Annotated[Union[ALL_PARAMS], Field(discriminator="backend")]  # type: ignore[valid-type]
AxisValues = Union[list[str], dict[str, float]]
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RealColumns(Strict):
    text: str = Field("text", description="Column holding the text.")
    label: str = Field("label", description="Column holding the label.")


class RealDataSpec(Strict):
    """The user's own labelled rows: few-shot examples, filter training data and the eval's validation set."""

    path: str = Field(description="csv, jsonl or parquet file (relative to the recipe); hf:owner/name for a Hub dataset; "
                                  "package:DIST/path for a data file shipped in an installed distribution.")
    columns: RealColumns = Field(default_factory=RealColumns, description="Which columns hold the text and the label.")
    split: str = Field("train", description="Split to read from a Hub dataset.")
    label_map: dict[str, str | None] = Field(
        default_factory=dict, description="Maps raw label values to the recipe's label names; null skips those rows.")
    train_per_label: int = Field(
        8, ge=1, description="Real rows per label that prompts, filters and eval may train on; every other row is held out for validation.",
    )
    max_rows: int | None = Field(None, ge=1, description="Read at most this many rows (a seeded sample).")
    validation_rows: int | None = Field(
        None, ge=1,
        description="Hold out at most this many rows (a seeded sample) for validation; the other non-training rows are "
                    "left unused, so a `sources:` entry may read them as unlabelled text. Default: every non-training row.",
    )
    seed: int | None = Field(
        None,
        description="Seed of the `max_rows` sample and of the split into training and validation rows. Default: the "
                    "recipe's seed. Pin it to build with several recipe seeds and score every build on the same rows.",
    )


class GateSpec(Strict):
    """What a run must reach to count as passing; a failing gate keeps the outputs but blocks a push."""

    min_gain: float | None = Field(None, description="Least macro-F1 gain of synthetic+real over real-only (0.05 = 5 points).")
    min_macro_f1: float | None = Field(None, ge=0, le=1, description="Least macro-F1 of synthetic+real.")
    evaluator: EvaluatorName = Field(LINEAR, description="Whose scores the gate reads.")


class EvalSpec(Strict):
    """Train small classifiers on synthetic, real and synthetic+real rows; score them on real validation rows."""

    evaluators: list[EvaluatorName] = Field(
        default_factory=lambda: [LINEAR], min_length=1,
        description="Headline evaluators; the fast linear one always also scores every filter stage (the ablation).",
    )
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1, description="One training run per seed.")
    ablation: bool = Field(True, description="Score the data as it stood after each filter stage (linear evaluator).")
    max_validation: int | None = Field(2000, ge=10, description="Score on at most this many validation rows (a seeded sample).")
    bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples for the gain's confidence interval.")
    save_models: bool = Field(False, description="Save the trained synthetic+real models into the run directory.")
    params: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Settings per evaluator, e.g. {setfit: {max_steps: 100}}.")
    gate: GateSpec | None = Field(None, description="Minimum gain or score for the run to pass.")

    @model_validator(mode="after")
    def _check_params(self) -> EvalSpec:
        # Evaluator settings are checked when the recipe loads, not at the end of a long build.
        for name, params in self.params.items():
            if name not in EVALUATOR_PARAMS:
                raise ValueError(f"eval.params: unknown evaluator {name!r}; known: {sorted(EVALUATOR_PARAMS)}")
            try:
                EVALUATOR_PARAMS[name].model_validate(params)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(p) for p in error["loc"])
                raise ValueError(f"params.{name}.{where}: {error['msg']}") from None
        return self


class HubSpec(Strict):
    """Where `factory build` pushes the dataset when the eval gate passes (and `factory push` by default)."""

    repo_id: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", description="owner/name of the dataset repo.")
    private: bool = Field(True, description="Create the repo as private.")
    token_env: EnvVarName = Field("HF_TOKEN", description="Environment variable holding the Hub token (never the token).")
    include_rejected: bool = Field(False, description="Also upload the rejected rows, as the `rejected` config.")
    license: str = Field("other", description="License id for the dataset card (e.g. cc-by-4.0, apache-2.0).")
    language: list[str] = Field(default_factory=lambda: ["en"], description="Language codes for the dataset card.")


class GenerateSpec(Strict):
    """How much to generate and how to prompt."""

    # Which of these two sizes a run is the kind's choice (RecipeBase.size_flag). They stay here, shared, because
    # moving each into its kind would change every recipe's resolved form, so its hash: no earlier run would resume.
    per_label: int | None = Field(None, ge=1, description="Rows wanted per label AFTER filtering (kinds whose rows have labels).")
    count: int | None = Field(None, ge=1, description="Rows wanted AFTER filtering (kinds sized by a count of rows).")
    few_shot: int = Field(2, ge=0, le=20, description="Examples sampled into each prompt.")
    example_max_words: int = Field(
        60, ge=5, le=2000,
        description="Real rows longer than this are not used as few-shot examples while enough shorter ones exist; "
                    "if too few do, the shortest are cut to this length. Keeps prompts short whatever the real data.",
    )
    reasoning: bool = Field(False, description="Ask for a short rationale before the text (chain of thought); kept in the row's meta.")
    match_real_length: bool = Field(
        False,
        description="Classification: ask each text for about N words, N drawn from the lengths of the label's real "
                    "training rows (else its examples). Small models write longer than people, and a classifier "
                    "trained on their rows learns length instead of the label.",
    )
    max_requests: int | None = Field(None, ge=1, description="Budget: most requests for the whole run (default: 4 x the target + 16).")
    batch_size: int = Field(32, ge=1, description="Requests per batch; rows are flushed to disk after each batch.")


class SourceSpec(Strict):
    """Documents that ground generation: each prompt is seeded with a passage from them."""

    path: str = Field(description="A file, folder or glob (relative to the recipe) of txt, md, html, pdf, jsonl, csv or "
                                  "parquet files; hf:owner/name for a Hub dataset; package:DIST/path for a file shipped "
                                  "in an installed distribution.")
    name: str | None = Field(None, max_length=80, description="How the dataset card names this source (default: the Hub id or "
                             "package file name; for local files 'local documents N': folder and file names are not published).")
    text_column: str = Field("text", description="Tables (jsonl, csv, parquet, hf:): the column holding each document's text.")
    where: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Tables: keep only the rows whose column holds one of the listed values (compared as text), "
                    "e.g. {status: [closed]}; every condition must hold.",
    )
    split: str = Field("train", description="Split to read from a Hub dataset.")
    max_documents: int | None = Field(None, ge=1, description="Read at most this many documents (a seeded sample).")
    exclude_real_validation: bool = Field(
        False,
        description="Drop the passages that contain a real validation row (when the source overlaps real_data). "
                    "Without it, such an overlap stops the build before any model is called.",
    )


class ChunkingSpec(Strict):
    """How documents are cut into passages. Tokens are words and punctuation marks (about 1.3 per word)."""

    size: int = Field(160, ge=16, le=4000, description="Most tokens per passage.")
    overlap: int = Field(24, ge=0, description="Tokens a passage repeats from the end of the one before it.")
    min_tokens: int = Field(4, ge=1, description="Shorter passages are dropped (counted as too_short in the manifest).")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSpec:
        if self.overlap >= self.size // 2:
            raise ValueError(f"overlap ({self.overlap}) must be under half of size ({self.size})")
        return self


class GroundingSpec(Strict):
    """How a recipe with `sources:` uses its passages."""

    mode: str | None = Field(None, description="What the model does with a passage; each task kind lists its modes "
                                               "(classification: topic, rewrite; instruction: qa, query).")
    select: Literal["sampling", "retrieval"] = Field(
        "sampling",
        description="sampling: spread over the corpus, every passage used once before any is reused. retrieval: the "
                    "passages most similar to the prompt's label, axes and examples (embeddings computed once).",
    )
    candidates: int = Field(16, ge=1, description="retrieval: each prompt draws its passage from this many nearest ones.")
    max_passage_words: int = Field(200, ge=10, description="A passage is cut to this many words in the prompt.")
    chunking: ChunkingSpec = Field(default_factory=ChunkingSpec, description="How documents become passages.")


class SplitSpec(Strict):
    """Held-out splits carved from the final rows (the rest is train), stratified by label, grouped by near-duplicates."""

    validation: int | float = Field(0, ge=0, description="A fraction of the rows (below 1) or a row count (1 or more).")
    test: int | float = Field(0, ge=0, description="A fraction of the rows (below 1) or a row count (1 or more).")
    group_threshold: float = Field(
        0.6, gt=0, le=1,
        description="Rows whose character 3-gram Jaccard is at least this (and rows from the same passage) form one "
                    "group, and a group never straddles two splits.")

    @model_validator(mode="after")
    def _sizes(self) -> SplitSpec:
        for name in ("validation", "test"):
            value = getattr(self, name)
            if value >= 1 and value != int(value):
                raise ValueError(f"{name}: {value} is neither a fraction below 1 nor a whole number of rows")
        fractions = [v for v in (self.validation, self.test) if v < 1]
        if sum(fractions) >= 1:
            raise ValueError("validation + test fractions must leave rows for train (their sum is 1 or more)")
        if not self.validation and not self.test:
            raise ValueError("splits: give validation and/or test (a fraction or a row count)")
        return self

    def held_out(self) -> dict[str, float]:
        return {"validation": self.validation, "test": self.test}


# The fine-tuning layouts `export:` writes from a kind's conversation (factory/export/); each task kind
# says which it can fill, and may add layouts of its own (Recipe.export_example).
EXPORT_FORMATS = ("columns", "messages", "openai", "alpaca", "sharegpt")


class ExportSpec(Strict):
    """Files for fine-tuning tools, written next to the dataset (run/export/<format>/<split>.jsonl)."""

    # Not a Literal: the task kind says which layouts it fills (its spec's export_formats, checked when the
    # recipe loads), and a kind may fill layouts of its own.
    formats: list[str] = Field(
        min_length=1,
        description="columns: the kind's own columns (text + label, instruction + response, a table's columns); "
                    "messages: a chat `messages` column (TRL, the Hub's chat datasets); openai: OpenAI fine-tuning JSONL, "
                    "checked against its rules; alpaca: instruction/input/output (+ history); sharegpt: conversations "
                    "with from/value. A kind may offer layouts of its own (the kinds' docs list them).")
    system_prompt: str | None = Field(None, description="A system message at the start of every chat example.")
    instruction: str | None = Field(
        None, description="Classification as chat: the instruction before each text (default: 'Classify the text. "
                          "Answer with one label: <labels>.').")
    openai_max_tokens: int = Field(
        65536, ge=256, description="OpenAI's per-example token limit for the model you will tune (65,536 for "
                                   "gpt-4o-mini and gpt-4.1 models; 16,385 for gpt-3.5-turbo).")


class BudgetSpec(Strict):
    """Money a build may spend on paid APIs, enforced before each request is sent."""

    usd: float = Field(gt=0, description="Most US dollars the run may spend, earlier builds of the same run directory "
                                         "included. Each request's worst case (prompt + max_tokens) is reserved before "
                                         "it is sent, so no request can take the total past it.")


class EngineSpec(Strict):
    """Where the build runs: this process (local) or a Ray cluster. The output is the same."""

    name: Literal["local", "ray"] = Field("local", description="local: asyncio in this process. ray: each generator's "
                                                              "requests on Ray actors (`pip install dataset-factory[ray]`).")
    address: str | None = Field(None, description="ray: the cluster, `auto` or ray://host:port (default: start one here).")
    workers: int = Field(2, ge=1, le=1024, description="ray: actors per generator (and embedding actors), each loading "
                                                      "its model once.")
    min_rows: int = Field(20_000, ge=0, description="ray: filters and embeddings go to Ray Data from this many rows; "
                                                    "fewer run in this process, where Ray Data's start-up (seconds "
                                                    "per stage) would cost more than it saves.")


class RecipeBase(Strict):
    # The grounding modes this kind offers, its default first; empty: the kind takes no `sources:`.
    grounding_modes: ClassVar[tuple[str, ...]] = ()
    # The shape of the kind's rows, which decides the filters it takes (factory.filters: text or table).
    row_shape: ClassVar[str] = TEXT
    # The export formats the kind can fill (a table has no conversation: only its columns).
    export_formats: ClassVar[tuple[str, ...]] = EXPORT_FORMATS
    # The command-line flag that overrides the kind's size (`factory build --per-label N` or `--count N`);
    # None: the kind takes neither.
    size_flag: ClassVar[str | None] = None

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)  # the recipe file, when it was read from one

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Run name; also the default run directory runs/<name>.")
    seed: int = Field(0, description="Seed for every random choice: labels, axes, few-shot picks, sampling.")
    description: str = Field("", description="What the generated texts are, in a sentence (goes into every prompt).")
    system_prompt: str | None = Field(None, description="Replaces the default system prompt.")
    axes: dict[str, AxisValues] = Field(
        default_factory=dict,
        description="Diversity axes: one value of each is sampled per prompt. A list, or a mapping value -> weight.",
    )
    generate: GenerateSpec = Field(default_factory=GenerateSpec, description="Targets, few-shot and budget.")
    generators: list[GeneratorSpec] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description=f"Generators with weights; default: the packaged local model {DEFAULT_MODEL} (llamacpp).",
    )
    filters: list[FilterSpec] = Field(default_factory=list, description="Filter chain, run in order.")  # type: ignore[valid-type]
    hub: HubSpec | None = Field(None, description="Push the finished dataset to the Hugging Face Hub.")
    sources: list[SourceSpec] = Field(
        default_factory=list, description="The user's documents: each prompt is grounded in one passage from them.")
    grounding: GroundingSpec = Field(default_factory=GroundingSpec, description="How passages from `sources` are chosen and used.")
    splits: SplitSpec | None = Field(None, description="Validation and test splits of the final rows (default: train only).")
    export: ExportSpec | None = Field(None, description="Write the dataset in fine-tuning formats too (`factory export` does it later).")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="Run the requests here or on a Ray cluster.")
    budget: BudgetSpec | None = Field(None, description="A hard money budget for paid APIs (`--budget` overrides it).")

    @field_validator("axes")
    @classmethod
    def _check_axes(cls, axes: dict[str, AxisValues]) -> dict[str, AxisValues]:
        for axis, values in axes.items():
            if not values:
                raise ValueError(f"axis '{axis}' has no values")
            if isinstance(values, dict):
                if any(w < 0 for w in values.values()):
                    raise ValueError(f"axis '{axis}' has a negative weight; weights must be >= 0")
                if not any(w > 0 for w in values.values()):
                    raise ValueError(f"axis '{axis}' has only zero weights; at least one must be > 0")
        return axes

    @model_validator(mode="after")
    def _check_generators(self) -> RecipeBase:
        if not self.generators:
            self.generators = [LlamaCppParams(backend="llamacpp", model=DEFAULT_MODEL)]
        for g in self.generators:
            g.name = g.name or (g.backend if len(self.generators) == 1 else f"{g.backend}-{g.model}")
        names = [g.name for g in self.generators]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"generator names must be unique; repeated: {', '.join(dupes)}")
        if not any(g.weight > 0 for g in self.generators):
            raise ValueError("generator weights are all zero; at least one must be > 0")
        takes = filters_for(self.row_shape)
        for index, stage in enumerate(self.filters):
            if stage.type not in takes:
                raise ValueError(f"filters[{index}]: {stage.type} does not judge {self.row_shape} rows; a {self.task!r} "
                                 f"recipe takes: {', '.join(takes)}")
        for stage in self.filters:  # a stage that asks a generator (a judge) names one of the recipe's
            judge = getattr(stage, "generator", None)
            if judge is not None and judge not in names:
                raise ValueError(f"filters: {stage.type}.generator {judge!r} is not a generator of this recipe; known: {', '.join(names)}")
        return self

    @model_validator(mode="after")
    def _check_budget(self) -> RecipeBase:
        problem = self.budget_problem()
        if problem:
            raise ValueError(problem)
        return self

    def budget_problem(self) -> str | None:
        """Why `budget.usd` cannot be enforced for this recipe (None when it can, or there is none)."""
        from factory.generators.pricing import price_of

        if self.budget is None:
            return None
        if self.engine.name == "ray":
            return "budget.usd: the money budget is enforced by the local engine only; remove it or use engine: local"
        unpriced = [f"{g.name} ({g.model})" for g in self.generators if price_of(g) is None]
        if unpriced:
            return (f"budget.usd: no price is known for generator(s) {', '.join(unpriced)}, so their spend cannot be "
                    "capped; add price: {input: USD, output: USD} (per million tokens) to each")
        return None

    @model_validator(mode="after")
    def _check_export(self) -> RecipeBase:
        refused = [f for f in (self.export.formats if self.export else []) if f not in self.export_formats]
        if refused:
            raise ValueError(f"export.formats: a {self.task!r} recipe cannot be written as {', '.join(refused)}; "
                             f"it exports as: {', '.join(self.export_formats)}")
        return self

    @model_validator(mode="after")
    def _check_grounding(self) -> RecipeBase:
        modes = self.grounding_modes
        if self.sources and not modes:
            raise ValueError(f"sources: the {self.task!r} task does not take documents")
        if self.grounding.mode is None:
            self.grounding.mode = modes[0] if self.sources else None
        elif self.grounding.mode not in modes:
            known = ", ".join(modes) if modes else "none (this task takes no sources)"
            raise ValueError(f"grounding.mode: {self.grounding.mode!r} is not a mode of the {self.task!r} task; known: {known}")
        elif not self.sources:
            raise ValueError("grounding.mode needs documents: add `sources:`")
        return self

    @property
    def grounded(self) -> bool:
        """True when prompts are seeded with passages from the user's documents."""
        return bool(self.sources)

    @property
    def source(self) -> Path | None:
        """The recipe file this spec was read from (None when it was built in code)."""
        return self._source

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the recipe are relative to (the recipe file's folder)."""
        return self._base_dir

    task: str

    def buckets(self) -> dict[str, int]:
        """Target rows per bucket (label, or 'all' for instruction recipes)."""
        raise NotImplementedError

    def resize(self, flag: str, rows: int) -> None:
        """Apply the command line's size flag (--per-label or --count); ValueError names the flag this kind takes."""
        if flag != self.size_flag:
            takes = f"it takes {self.size_flag}" if self.size_flag else "it takes no size flag"
            raise ValueError(f"{flag} does not size a {self.task!r} recipe; {takes}")
        self.set_size(rows)

    def set_size(self, rows: int) -> None:
        """Set the kind's size setting to `rows` (its `size_flag`'s value)."""
        raise NotImplementedError

    def real_rows(self) -> RealDataSpec | None:
        """The user's real rows this recipe reads, if its kind takes any."""
        return None

    def evaluation(self) -> EvalSpec | None:
        """The eval stage's settings, if this kind has one and the recipe asks for it."""
        return None

    def request_budget(self) -> int:
        return self.generate.max_requests or 4 * sum(self.buckets().values()) + 16

    @property
    def needs_sandbox(self) -> bool:
        """True when the recipe runs model-written code: the sandbox is checked before the first request."""
        return False

    def resolved(self) -> dict[str, Any]:
        """The recipe with defaults filled in, as plain data (no secrets: recipes only name env vars)."""
        return self.model_dump(mode="json")

    def hash(self) -> str:
        """The recipe's identity; where it runs (`engine`) is left out: it changes no row."""
        resolved = {k: v for k, v in self.resolved().items() if k != "engine"}
        return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16]


class CountSpec(RecipeBase):
    """A kind whose target is a number of rows, `generate.count` (default 50), in one bucket: "all"."""

    BUCKET: ClassVar[str] = "all"
    size_flag: ClassVar[str | None] = "--count"

    @model_validator(mode="after")
    def _count(self) -> CountSpec:
        if self.generate.per_label is not None:
            raise ValueError(f"generate.per_label: a {self.task!r} recipe has no labels; use generate.count")
        self.generate.count = self.generate.count or 50
        return self

    def buckets(self) -> dict[str, int]:
        return {self.BUCKET: self.generate.count or 0}

    def set_size(self, rows: int) -> None:
        self.generate.count = rows
