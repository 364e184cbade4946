"""The classification kind: (text, label) rows, one prompt per text of a given label."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from factory.filters.params import ExactDedupParams
from factory.records import STAGE_PARSE, Completion, Conversation, Prompt, Record, Rejected
from factory.spec import EvalSpec, RealDataSpec, RecipeBase, Strict
from factory.tasks.base import Recipe, bounded_examples, template

if TYPE_CHECKING:
    from factory.corpus.selection import PassagePicker


class LabelSpec(Strict):
    """One class of a classification recipe."""

    description: str = Field(min_length=1, description="What a text with this label is; it goes into every prompt.")
    examples: list[str] = Field(default_factory=list, description="Example texts with this label, sampled as few-shot examples.")


class ClassificationSpec(RecipeBase):
    """A recipe that makes (text, label) pairs."""

    # topic: a new text of the label about the passage's content (SynthesizRR's task inversion);
    # rewrite: the passage rewritten to carry the label (counterfactual augmentation).
    grounding_modes: ClassVar[tuple[str, ...]] = ("topic", "rewrite")
    size_flag: ClassVar[str | None] = "--per-label"

    task: Literal["classification"]
    labels: dict[str, LabelSpec] = Field(description="Label name -> description and examples; at least two labels.")
    real_data: RealDataSpec | None = Field(None, description="The user's real labelled rows, if any.")
    eval: EvalSpec | None = Field(None, description="Prove the data helps, on the real validation rows (needs real_data).")

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, LabelSpec]) -> dict[str, LabelSpec]:
        if len(labels) < 2:
            raise ValueError(f"a classification recipe needs at least two labels, got {len(labels)}")
        return labels

    @model_validator(mode="after")
    def _defaults(self) -> ClassificationSpec:
        if self.generate.count is not None:
            raise ValueError("generate.count: a classification recipe is sized per label; use generate.per_label")
        self.generate.per_label = self.generate.per_label or 50
        if self.eval is not None and self.real_data is None:
            raise ValueError("eval needs real_data: the scores are measured on the user's real validation rows")
        if not self.filters:
            self.filters = [ExactDedupParams()]
        if self.generate.match_real_length and self.grounding.mode == "rewrite":
            raise ValueError("generate.match_real_length: a rewrite keeps its passage's length; use it with mode topic")
        if self.generate.match_real_length and "length" in self.axes:
            raise ValueError("generate.match_real_length sets each text's length: remove the `length` axis")
        return self

    def buckets(self) -> dict[str, int]:
        return {label: self.generate.per_label or 0 for label in self.labels}

    def set_size(self, rows: int) -> None:
        self.generate.per_label = rows

    def real_rows(self) -> RealDataSpec | None:
        return self.real_data

    def evaluation(self) -> EvalSpec | None:
        return self.eval


class ClassificationRecipe(Recipe[ClassificationSpec]):
    """Prompts for (text, label) rows: label descriptions, sampled axis values and few-shot examples."""

    kind = "classification"
    Spec: ClassVar[type[ClassificationSpec]] = ClassificationSpec
    task_categories: ClassVar[tuple[str, ...]] = ("text-classification",)
    columns: ClassVar[tuple[str, ...]] = ("text", "label")

    def __init__(self, spec: ClassificationSpec, real_train: Sequence[Record] = (), passages: PassagePicker | None = None) -> None:
        super().__init__(spec, real_train, passages)
        real: dict[str, list[str]] = defaultdict(list)
        for row in real_train:
            real[row.label or ""].append(row.text)
        # Few-shot pools: the recipe's own examples, plus real training rows of a bounded length.
        generate = spec.generate
        self.examples = {
            label: list(dict.fromkeys([
                *spec.labels[label].examples,
                *bounded_examples(real.get(label, []), generate.example_max_words, max(generate.few_shot, 1)),
            ]))
            for label in spec.labels
        }
        # Lengths (words) to ask for with match_real_length: the user's real rows show how long a text
        # of each label is; the recipe's examples stand in when there are none.
        self.real_lengths = {
            label: [len(text.split()) for text in (real.get(label) or spec.labels[label].examples)] for label in spec.labels
        }

    @classmethod
    def bucket(cls, record: Record) -> str:
        return record.label or ""

    @classmethod
    def fields(cls, record: Record) -> dict[str, Any]:
        return {"text": record.fields["text"], "label": record.label}

    @classmethod
    def conversation(cls, row: dict[str, Any], recipe: dict[str, Any]) -> Conversation:
        # For a chat model tuned as a classifier: the instruction names the labels, the answer is one.
        instruction = (recipe.get("export") or {}).get("instruction") or (
            f"Classify the text. Answer with one label: {', '.join(recipe['labels'])}.")
        return Conversation([(instruction, row["label"])], input=row["text"])

    def schema(self) -> dict:
        props: dict = {}
        if self.spec.generate.reasoning:
            props["rationale"] = {"type": "string", "description": "One sentence: why the text fits the label."}
        props["label"] = {"type": "string", "enum": list(self.spec.labels)}
        props["text"] = {"type": "string"}
        return {"type": "object", "properties": props, "required": list(props)}

    def reply_format(self, label: str) -> str:
        fields = {}
        if self.spec.generate.reasoning:
            fields["rationale"] = "<one sentence on why the text fits the label>"
        fields["label"] = label
        fields["text"] = "<the text>"
        return json.dumps(fields)

    def prompt(self, bucket: str, index: int, generator: str | None = None, focus: Sequence[str] = ()) -> Prompt:
        rng = self.rng(bucket, index)
        axes = self.sample_axes(rng)
        pool = self.examples[bucket]
        shots = rng.sample(pool, min(self.spec.generate.few_shot, len(pool)))
        example_block = ""
        if shots:
            example_block = f'Examples of "{bucket}" texts:\n' + "\n".join(f"- {s}" for s in shots) + "\n"
        query = " ".join([self.spec.labels[bucket].description, *axes.values(), *shots])
        passage, grounding = self.passage(bucket, index, query)
        template_name = f"classification_{self.spec.grounding.mode}_user" if passage else "classification_user"
        if self.spec.grounding.mode == "rewrite":
            shots = []  # a rewrite follows its passage, not examples
        length: dict[str, int] = {}
        if self.spec.generate.match_real_length and self.real_lengths[bucket]:
            # Its own random stream, so that turning the option on changes no other choice of the prompt.
            length["words"] = self.rng(bucket, index, "length").choice(self.real_lengths[bucket])
            axes_asked = axes | {"length": f"about {length['words']} words"}
        else:
            axes_asked = axes
        user = template(template_name).substitute(
            description=self.spec.description or "Write a short text for a text-classification data set.",
            label_list="\n".join(f"- {name}: {label.description}" for name, label in self.spec.labels.items()),
            label=bucket,
            constraints=self.constraints(axes_asked),
            examples=(example_block if shots else "") + self.focus_block(focus),
            reply_format=self.reply_format(bucket),
            passage=passage,
        )
        return Prompt(
            bucket=bucket, index=index, messages=self.messages(user),
            generator=generator or self.assign_generator(bucket, index),
            seed=rng.randrange(2**31), schema=self.schema(),
            target={"label": bucket, "axes": axes, "examples": shots, **grounding, **length,
                    **({"focus": list(focus)} if focus else {})},
        )

    def parse(self, prompt: Prompt, completion: Completion, record_id: str) -> Record | Rejected:
        fields = ("rationale", "label", "text") if self.spec.generate.reasoning else ("label", "text")
        reply = self._reply(prompt, completion, record_id, fields)
        if isinstance(reply, Rejected):
            return reply
        text, label, target = reply["text"], reply.get("label") or prompt.bucket, prompt.bucket
        meta = self.meta(prompt, completion)

        def reject(reason: str, detail: str = "") -> Rejected:
            return Rejected(id=record_id, stage=STAGE_PARSE, reason=reason, text=text, label=target, detail=detail, meta=meta)

        if label not in self.spec.labels:
            return reject("unknown_label", f"the reply says label '{label}'")
        if label != target:
            return reject("label_mismatch", f"asked for '{target}', the reply says '{label}'")
        copied = self.copies(text, prompt, 1.0 if self.spec.grounding.mode == "rewrite" else 0.8)
        if copied:
            return reject(copied)
        if reply.get("rationale"):
            meta["rationale"] = reply["rationale"]
        return Record({"text": text}, label=target, id=record_id, meta=meta)
