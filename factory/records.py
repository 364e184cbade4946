"""The rows that flow between stages: Prompt -> Completion -> Record | Rejected."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, str]
# Stage names that are not filters, spelled here once: replies are parsed, the chain's survivors are
# trimmed to the target, and what is left is the final dataset (stages.json, the funnel, the ablation).
STAGE_PARSE, STAGE_TARGET, STAGE_FINAL = "parse", "target", "final"
# The dataset's config when a kind makes one table of rows (related tables make one config each).
DEFAULT_CONFIG = "default"
# Row meta: True when the row's text is the user's own passage, which a model labelled but did not write
# (an annotated row). Checks for a model copying its source do not apply to it.
OWN_TEXT = "own_text"
# Row meta: how far to trust the row, in [0, 1] (1.0 when absent); evaluators train with it.
WEIGHT = "weight"
# A row's meta key (and its prompt's target key): the ids of the few-shot examples it was written after (a real
# row's id, or where the recipe writes the example, as `labels.positive.examples[0]`).
FEW_SHOT = "few_shot"


@dataclass(slots=True)
class Prompt:
    """One request to a generator, with the target it was built for.

    `bucket` is what the per-bucket target counts: the label for classification, "all" for
    instruction recipes. `(bucket, index)` identifies the prompt within a run; the prompt is a pure
    function of (recipe hash, seed, bucket, index), so any worker can rebuild it. The build then
    settles its `seed` from its messages (run/store.py: settle_seeds), which the request key holds.
    """

    bucket: str
    index: int
    messages: list[Message]
    generator: str
    seed: int
    target: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] | None = None

    @property
    def uid(self) -> str:
        return f"{self.bucket}:{self.index}"


@dataclass(slots=True)
class Completion:
    """A generator's reply to one prompt, or the infrastructure error that replaced it."""

    text: str
    model: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    seconds: float = 0.0
    cost_usd: float | None = None  # what the request cost when it was sent (None: the model has no known price)
    cached: bool = False
    worker: str = ""  # the engine worker that answered (Ray); like `cached`, not part of the stored reply

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("cached")
        data.pop("worker")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Completion:
        return cls(**data, cached=True)


@dataclass(slots=True)
class Record:
    """A kept row: the fields its task kind declares, its label (if the kind has labels), id and meta.

    `fields` is {"text": ...} for a classification row, {"instruction": ..., "response": ...} for an
    instruction pair, a table row's columns for a table. The kind puts first the field that filters
    judge as the row's text (`text`).
    """

    fields: dict[str, Any]
    label: str | None = None
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The text that filters, dedup and evaluators judge: the kind's first field."""
        return str(next(iter(self.fields.values()), "") or "")

    def texts(self) -> list[str]:
        """Every text field, in the kind's order (an instruction and its response, say)."""
        return [value for value in self.fields.values() if isinstance(value, str)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        if "fields" not in data:  # generated.jsonl before rows carried their fields
            response = data.get("response")
            fields = {"text": data["text"]} if response is None else {"instruction": data["text"], "response": response}
            data = {"fields": fields, **{k: data[k] for k in ("label", "id", "meta") if k in data}}
        return cls(**data)


@dataclass(slots=True)
class Rejected:
    """A row that did not make it, with the stage that dropped it and why."""

    id: str
    stage: str
    reason: str
    text: str = ""
    label: str | None = None
    detail: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Record, stage: str, reason: str, detail: str = "") -> Rejected:
        return cls(
            id=record.id, stage=stage, reason=reason, text=record.text, label=record.label,
            detail=detail, meta=dict(record.meta),
        )


@dataclass(slots=True)
class Conversation:
    """A dataset row as a chat, for the fine-tuning layouts: (user, assistant) turns in order.

    `input` is data that goes with the first user turn (the text a classifier is asked about): chat
    layouts append it to that turn's content, Alpaca keeps it in its own `input` field."""

    turns: list[tuple[str, str]]
    input: str = ""

    def user_content(self, turn: int) -> str:
        user = self.turns[turn][0]
        return f"{user}\n\n{self.input}" if turn == 0 and self.input else user

    def messages(self, system: str | None = None) -> list[Message]:
        out: list[Message] = [{"role": "system", "content": system}] if system else []
        for k, (_, assistant) in enumerate(self.turns):
            out += [{"role": "user", "content": self.user_content(k)}, {"role": "assistant", "content": assistant}]
        return out
