"""The task-kind contract, and what every kind shares: sampling, reply parsing, rejection checks.

A task kind is one module in this package: its spec model (the recipe's fields), a `Recipe`
subclass (prompts, reply schema, parse, the dataset's columns, what the card says of it) and one
line in the registry (`factory/tasks/__init__.py`). Nothing outside the kind's module tests which
kind a recipe is."""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from factory.records import DEFAULT_CONFIG, FEW_SHOT, STAGE_PARSE, Completion, Conversation, Message, Prompt, Record, Rejected
from factory.spec import AxisValues, RecipeBase
from factory.text import extract_json, is_refusal, normalize, words

if TYPE_CHECKING:
    from factory.corpus import Passage
    from factory.corpus.selection import PassagePicker

SpecT = TypeVar("SpecT", bound=RecipeBase)
TEMPLATES = Path(__file__).parent / "templates"

@cache
def template(name: str) -> Template:
    return Template((TEMPLATES / f"{name}.txt").read_text(encoding="utf-8").strip())


def weighted_pick(rng: random.Random, values: AxisValues) -> str:
    if isinstance(values, dict):
        names = list(values)
        return rng.choices(names, weights=[values[n] for n in names], k=1)[0]
    return rng.choice(values)


def too_close(text: str, others: list[str], threshold: float = 0.8) -> bool:
    """True when `text` is (nearly) one of `others`: word-set Jaccard at or above `threshold`."""
    mine = set(words(text))
    if not mine:
        return False
    for other in others:
        theirs = set(words(other))
        if theirs and len(mine & theirs) / len(mine | theirs) >= threshold:
            return True
    return False


_SENTENCE_END = re.compile(r"[.!?…][\"')\]]*\s")


def cut_to_words(text: str, max_words: int) -> str:
    """`text` cut to at most `max_words` words: at the last sentence end if one falls in the second
    half, else at a word boundary with an ellipsis."""
    parts = text.split()
    if len(parts) <= max_words:
        return text
    head = " ".join(parts[:max_words])
    ends = [m.end() for m in _SENTENCE_END.finditer(head + " ")]
    if ends and len(head[: ends[-1]].split()) >= max_words // 2:
        return head[: ends[-1]].strip()
    return head + " …"


def bounded_examples(texts: Sequence[str], max_words: int, need: int) -> list[str]:
    """Real rows fit to be few-shot examples, in their order.

    Rows within `max_words` are preferred: while at least `need` of them exist, longer rows are left
    out (a whole news article as an example makes a slow prompt, and a model paraphrases it instead
    of writing something new). With fewer, the shortest of the rest are cut to `max_words` to fill up.
    """
    fitting = [t for t in texts if len(t.split()) <= max_words]
    if len(fitting) >= need:
        return fitting
    longer = sorted((t for t in texts if len(t.split()) > max_words), key=lambda t: len(t.split()))
    return fitting + [cut_to_words(t, max_words) for t in longer[: need - len(fitting)]]


class Recipe(ABC, Generic[SpecT]):
    """A task kind at run time: turns a validated spec into prompts, and model replies into records
    or rejected rows, and says what the kind's dataset rows hold.

    Prompts are a pure function of (seed, bucket, index), so a resumed run or another worker
    rebuilds exactly the same requests. `real_train` (the user's real training rows, never
    validation rows) may join the few-shot pool. A recipe with `sources:` gets a `passages` picker,
    and each of its prompts is grounded in one passage (`grounding.mode` says how).
    """

    kind: ClassVar[str]  # the recipe's `task:` value
    # How many rows one request is expected to yield (the planner's first guess), and the most
    # requests per bucket in one round (None: no cap; 1 when each prompt depends on the last reply).
    rows_per_request: int = 1
    requests_per_round: int | None = None
    Spec: ClassVar[type[RecipeBase]]  # the kind's recipe fields
    task_categories: ClassVar[tuple[str, ...]]  # Hugging Face task categories, for the dataset card
    columns: ClassVar[tuple[str, ...]]  # the kind's own dataset columns, in order
    column_types: ClassVar[dict[str, str]] = {}  # the datasets dtype of each of them that is not a string
    # What the layouts the kind writes itself (export_example) hold, for the dataset card: layout -> description.
    export_layouts: ClassVar[dict[str, str]] = {}
    # The columns that answer the row's first column (filters judge them by an answer's rules: code and
    # "Here is ..." openings are fine there, not in a generated text).
    answer_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: SpecT, real_train: Sequence[Record] = (), passages: PassagePicker | None = None) -> None:
        self.spec = spec
        self.passages = passages
        if spec.grounded and passages is None:
            raise ValueError("a recipe with sources needs a passage picker (factory.corpus.selection.PassagePicker)")
        self._generator_names = [g.name for g in spec.generators]
        self._generator_weights = [g.weight for g in spec.generators]

    def rng(self, bucket: str, index: int, stream: str = "prompt") -> random.Random:
        return random.Random(f"{self.spec.seed}/{bucket}/{index}/{stream}")

    @property
    def seed_salt(self) -> int | None:
        """What a prompt's request seed comes from besides its messages (run/store.py: settle_seeds): the
        recipe's seed, so that another `seed:` draws new replies. None where replies must not depend on it."""
        return self.spec.seed

    def assign_generator(self, bucket: str, index: int) -> str:
        """Weighted choice of generator, on its own random stream so prompts do not depend on it."""
        rng = self.rng(bucket, index, "generator")
        return rng.choices(self._generator_names, weights=self._generator_weights, k=1)[0]

    def sample_axes(self, rng: random.Random) -> dict[str, str]:
        return {axis: weighted_pick(rng, values) for axis, values in self.spec.axes.items()}

    @staticmethod
    def constraints(axes: dict[str, str]) -> str:
        if not axes:
            return ""
        return "It must fit: " + "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in axes.items()) + "."

    def messages(self, user: str) -> list[Message]:
        system = self.spec.system_prompt or template(f"{self.kind}_system").template
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    @classmethod
    @abstractmethod
    def fields(cls, record: Record) -> dict[str, Any]:
        """The kind's columns of one dataset row (`columns`, in order)."""

    @classmethod
    def split_text(cls, record: Record) -> str:
        """What near-duplicate rows are found on when the splits are made (a group never straddles two splits):
        every text field by default."""
        return "\n".join(record.texts())

    @classmethod
    @abstractmethod
    def bucket(cls, record: Record) -> str:
        """The bucket whose target `record` counts towards (one of the spec's `buckets()`)."""

    @abstractmethod
    def prompt(self, bucket: str, index: int, generator: str | None = None, focus: Sequence[str] = ()) -> Prompt:
        """Prompt number `index` of `bucket`; `generator` overrides the weighted assignment, and
        `focus` (texts of a thin cluster) asks for more rows like them."""

    def passage(self, bucket: str, index: int, query: str) -> tuple[str, dict[str, Any]]:
        """The passage grounding prompt (bucket, index), cut for the prompt, and its provenance for the
        prompt's target; ("", {}) for an ungrounded recipe."""
        if self.passages is None:
            return "", {}
        chosen: Passage = self.passages.pick(bucket, index, query)
        text = cut_to_words(chosen.text, self.spec.grounding.max_passage_words)
        return text, {"passage": text, "passage_id": chosen.id, "document": chosen.document, "source_index": chosen.source}

    @staticmethod
    def focus_block(focus: Sequence[str]) -> str:
        if not focus:
            return ""
        return ("The data set has too few texts like these; write about the same kind of content, in new words:\n"
                + "\n".join(f"- {t}" for t in focus) + "\n")

    @abstractmethod
    def parse(self, prompt: Prompt, completion: Completion, record_id: str) -> Record | Rejected:
        """A record, or a rejected row with a reason. Never raises on bad model output."""

    def parse_rows(self, prompt: Prompt, completion: Completion, record_id: str) -> list[Record | Rejected]:
        """Every row in one reply (one, unless the kind asks for several rows per request; none while a
        multi-request row, such as a conversation, is not finished)."""
        return [self.parse(prompt, completion, record_id)]

    def typical_replies(self, bucket: str) -> list[str]:
        """Replies like those this kind expects for `bucket`, from the recipe's examples: the estimate takes
        their mean length in tokens. Empty when the kind cannot tell."""
        return []

    async def examine(self, prompt: Prompt, completion: Completion) -> None:
        """Slow work a reply needs before `parse_rows` (running a solution's tests), awaited off the
        event loop's critical path: the build keeps generating meanwhile. Nothing by default."""

    def follow_up(self, prompt: Prompt, completion: Completion) -> Prompt | None:
        """The next request of a row that takes several (a conversation's next turn), or None.

        The follow-up keeps `prompt`'s (bucket, index) and is a pure function of it and the cached
        replies, so a resumed build rebuilds the same chain of requests and sends none again."""
        return None

    def dataset_row(self, record: Record) -> dict[str, Any]:
        """One row of the finished dataset: id, the kind's columns, and where it came from."""
        row: dict[str, Any] = {"id": record.id, **self.fields(record)}
        row |= {"generator": record.meta.get("generator"), "model": record.meta.get("model")}
        row |= {f"axis_{a}": record.meta.get(f"axis_{a}") for a in self.spec.axes}
        if self.spec.generate.reasoning:
            row["rationale"] = record.meta.get("rationale", "")
        if self.spec.grounded:  # provenance: the passage's id (its document's name stays in the run directory)
            row["source_passage"] = record.meta.get("passage_id")
        return row | record.meta.get("dataset_columns", {})  # what filters measured for users (a judge's scores)

    @classmethod
    def conversation(cls, row: dict[str, Any], recipe: dict[str, Any]) -> Conversation:
        """A finished dataset row as a chat, for the export layouts (kinds whose spec offers chat formats).

        `recipe` is the run's resolved recipe (its `export:` settings, a classifier's labels)."""
        raise NotImplementedError(f"the {cls.kind!r} kind has no conversation")

    @classmethod
    def export_example(cls, fmt: str, row: dict[str, Any], recipe: dict[str, Any], system_prompt: str | None) -> dict[str, Any] | None:
        """A finished dataset row in export layout `fmt`, where the kind writes that layout itself (a layout of its
        own, or a shared one it fills differently); None: the shared layout of its `conversation` (or columns)."""
        return None

    @classmethod
    def export_columns(cls, row: dict[str, Any]) -> dict[str, Any]:
        """A finished dataset row as the `columns` export writes it: the kind's own columns (all, when it declares none)."""
        return {c: row[c] for c in cls.columns} if cls.columns else dict(row)

    def dataset_schemas(self) -> dict[str, dict[str, str]]:
        """Each config's columns and their datasets dtypes, as `dataset_row` writes them: a build that kept
        no row still writes a dataset that loads, with every column."""
        columns = {"id": "string", **{c: self.column_types.get(c, "string") for c in self.columns},
                   "generator": "string", "model": "string", **{f"axis_{a}": "string" for a in self.spec.axes}}
        if self.spec.generate.reasoning:
            columns["rationale"] = "string"
        if self.spec.grounded:
            columns["source_passage"] = "string"
        return {DEFAULT_CONFIG: columns}

    def dataset_configs(self, final: Sequence[Record]) -> dict[str, list[dict[str, Any]]]:
        """The dataset's configs (name -> rows): one, "default", unless the kind makes several tables."""
        return {DEFAULT_CONFIG: [self.dataset_row(r) for r in final]}

    def waiting(self, bucket: str) -> bool:
        """True while `bucket`'s prompts cannot be written yet (a child table before its parents' keys)."""
        return False

    def observe(self, kept: Sequence[Record]) -> None:
        """Called after each round's filtering with the rows kept so far (in final order)."""

    def finalize(self, final: list[Record]) -> tuple[str, list[Record], list[Rejected]] | None:
        """A last check over the final rows before anything is written: (stage, kept, dropped), or None."""
        return None

    def reference_rows(self) -> list[Record]:
        """Real rows beyond `real_data`'s labelled ones that the data must not copy (the leakage filter)."""
        return []

    def report(self, final: Sequence[Record]) -> dict[str, Any] | None:
        """What the kind measures on the final rows, for the manifest's `kind_report` (None: nothing)."""
        return None

    def artifacts(self) -> dict[str, str]:
        """Files the build writes into the run directory besides the dataset (name -> text)."""
        return {}

    @classmethod
    def card_section(cls, kind_report: dict[str, Any]) -> str:
        """Markdown for the dataset card about the kind's report ('' for none)."""
        return ""

    def _reply(self, prompt: Prompt, completion: Completion, record_id: str, fields: tuple[str, ...]) -> dict[str, str] | Rejected:
        """Shared checks: failed request, truncation, empty, refusal, invalid JSON, missing fields."""

        def reject(reason: str, detail: str = "", text: str = "") -> Rejected:
            return Rejected(id=record_id, stage=STAGE_PARSE, reason=reason, text=text or completion.text,
                            label=prompt.target.get("label"), detail=detail, meta=self.meta(prompt, completion))

        if completion.error:
            return reject("request_failed", completion.error)
        raw = completion.text.strip()
        if completion.finish_reason == "length":
            return reject("truncated", f"stopped at max_tokens after {completion.completion_tokens} tokens")
        if not raw:
            return reject("empty")
        if is_refusal(raw):
            return reject("refusal")
        reply = extract_json(raw)
        if reply is None:
            return reject("bad_json", "the reply is not a JSON object")
        values: dict[str, str] = {}
        for name in fields:
            value = reply.get(name)
            if value is None and name in prompt.schema.get("required", []):  # type: ignore[union-attr]
                return reject("bad_json", f"missing field '{name}'")
            if value is not None and not isinstance(value, str):
                return reject("bad_json", f"field '{name}' is a {type(value).__name__}, not a string")
            values[name] = (value or "").strip()
            if name in ("text", "instruction", "response", "query", "user", "assistant"):
                if not values[name]:
                    return reject("empty", f"field '{name}' is empty")
                if is_refusal(values[name]):
                    return reject("refusal", text=values[name])
        return values

    def meta(self, prompt: Prompt, completion: Completion) -> dict[str, Any]:
        return {
            "generator": prompt.generator,
            "model": completion.model,
            "bucket": prompt.bucket,
            "index": prompt.index,
            **{k: prompt.target[k] for k in ("passage_id", "document", "source_index", FEW_SHOT) if k in prompt.target},
            **{f"axis_{k}": v for k, v in prompt.target.get("axes", {}).items()},
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
        }

    def copies(self, text: str, prompt: Prompt, passage_threshold: float = 0.8) -> str | None:
        """'copied_example', 'copied_passage' or 'repeats_prompt' when the text was lifted from the prompt, else None.

        A grounded row may share the passage's words (that is the point), not be the passage: its
        word-set Jaccard with it must stay under `passage_threshold` (1.0 for a rewrite: only an
        unchanged passage is a copy)."""
        if too_close(text, prompt.target.get("examples", [])):
            return "copied_example"
        if "passage" in prompt.target:
            if normalize(text) == normalize(prompt.target["passage"]) or too_close(text, [prompt.target["passage"]], passage_threshold):
                return "copied_passage"
        norm = normalize(text)
        # The prompt's own words, not its passage: a query may well use a phrase of the passage.
        instructions = prompt.messages[-1]["content"]
        if prompt.target.get("passage"):
            instructions = instructions.replace(prompt.target["passage"], "")
        if len(norm) >= 12 and norm in normalize(instructions):
            return "repeats_prompt"
        return None
