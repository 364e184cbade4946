"""The classification kind: (text, label) rows, one prompt per text of a given label."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from factory.filters.params import ExactDedupParams
from factory.records import FEW_SHOT, OWN_TEXT, STAGE_PARSE, WEIGHT, Completion, Conversation, Prompt, Record, Rejected
from factory.spec import EvalSpec, RealDataSpec, RecipeBase, Strict
from factory.tasks.base import Recipe, bounded_examples, cut_to_words, template
from factory.text import extract_json

if TYPE_CHECKING:
    from factory.corpus.selection import PassagePicker


ANNOTATE = "annotate"


class LabelSpec(Strict):
    """One class of a classification recipe."""

    description: str = Field(min_length=1, description="What a text with this label is; it goes into every prompt.")
    examples: list[str] = Field(default_factory=list, description="Example texts with this label, sampled as few-shot examples.")


class AnnotateSpec(Strict):
    """How `grounding.mode: annotate` labels the user's own passages instead of writing new texts."""

    votes: int = Field(3, ge=1, le=9, description="Requests per passage, each with another draw of few-shot examples "
                                                 "and label order; their agreement is the row's weight.")
    min_agreement: float = Field(
        0.6, gt=0, le=1, description="A passage whose most-voted label has a smaller share of the votes is rejected "
                                     "(low_agreement); a vote that names no listed label counts against it.")
    context: str | None = Field(None, description="What the texts are, for the annotator (e.g. 'Snippets of film "
                                                  "reviews.'); `description:` is an instruction to write, not to label.")
    generated_share: float = Field(
        0.0, ge=0, lt=1, description="A share of the prompts that write a new grounded text (mode topic) instead "
                                     "of labelling a passage: a mix of annotated and generated rows.")


class ClassificationSpec(RecipeBase):
    """A recipe that makes (text, label) pairs."""

    # topic: a new text of the label about the passage's content (SynthesizRR's task inversion);
    # rewrite: the passage rewritten to carry the label (counterfactual augmentation);
    # annotate: the passage itself, labelled by the model (several votes; cheap, and real text).
    grounding_modes: ClassVar[tuple[str, ...]] = ("topic", "rewrite", "annotate")
    size_flag: ClassVar[str | None] = "--per-label"

    task: Literal["classification"]
    labels: dict[str, LabelSpec] = Field(description="Label name -> description and examples; at least two labels.")
    real_data: RealDataSpec | None = Field(None, description="The user's real labelled rows, if any.")
    eval: EvalSpec | None = Field(None, description="Prove the data helps, on the real validation rows (needs real_data).")
    annotate: AnnotateSpec = Field(default_factory=AnnotateSpec, description="grounding.mode annotate: votes and "
                                                                              "agreement.")

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
        if self.generate.match_real_length and self.grounding.mode == ANNOTATE and not self.annotate.generated_share:
            raise ValueError("generate.match_real_length: an annotated row is its passage, whatever its length; "
                             "use it with mode topic or annotate.generated_share")
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
        # Where each example comes from, for the rows' provenance: a real row's id (a long one is cut to its first
        # words), or its place in the recipe.
        self.example_ids: dict[str, str] = {}
        for row in real_train:
            self.example_ids.setdefault(row.text, row.id)
            self.example_ids.setdefault(cut_to_words(row.text, generate.example_max_words), row.id)
        for label in spec.labels:
            for n, text in enumerate(spec.labels[label].examples):
                self.example_ids[text] = f"labels.{label}.examples[{n}]"
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

    def dataset_row(self, record: Record) -> dict[str, Any]:
        # weight: how far to trust the row (an annotation's agreement, a weights stage), for weighted training.
        row = super().dataset_row(record) | {"weight": float(record.meta.get(WEIGHT, 1.0))}
        if self.spec.grounded:
            row["origin"] = ANNOTATE if record.meta.get(OWN_TEXT) else "generated"
        return row

    def dataset_schemas(self) -> dict[str, dict[str, str]]:
        return {config: columns | {"weight": "float64", **({"origin": "string"} if self.spec.grounded else {})}
                for config, columns in super().dataset_schemas().items()}

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

    def mode(self, bucket: str, index: int) -> str | None:
        """What prompt (bucket, index) does with its passage: the recipe's grounding mode, except for the share of
        an annotating recipe's prompts that write a new text instead (`annotate.generated_share`)."""
        mode = self.spec.grounding.mode
        if mode == ANNOTATE and self.rng(bucket, index, "mix").random() < self.spec.annotate.generated_share:
            return "topic"
        return mode

    def typical_replies(self, bucket: str) -> list[str]:
        if self.spec.grounding.mode == ANNOTATE:  # a vote names a label
            return [json.dumps({"label": bucket})]
        return [json.dumps({"label": bucket, "text": text}, ensure_ascii=False) for text in self.examples[bucket]]

    def prompt(self, bucket: str, index: int, generator: str | None = None, focus: Sequence[str] = ()) -> Prompt:
        mode = self.mode(bucket, index)
        if mode == ANNOTATE:
            # The bucket only steers which passage is taken (the nearest to its label, with retrieval); the
            # label is the model's, and the row counts towards whichever label it gets.
            label = self.spec.labels[bucket]
            _, grounding = self.passage(bucket, index, " ".join([label.description, *label.examples]))
            return self._vote_prompt(bucket, index, generator or self.assign_generator(bucket, index),
                                     {**grounding, "mode": ANNOTATE, "votes": [], "failures": []})
        rng = self.rng(bucket, index)
        axes = self.sample_axes(rng)
        pool = self.examples[bucket]
        shots = rng.sample(pool, min(self.spec.generate.few_shot, len(pool)))
        example_block = ""
        if shots:
            example_block = f'Examples of "{bucket}" texts:\n' + "\n".join(f"- {s}" for s in shots) + "\n"
        query = " ".join([self.spec.labels[bucket].description, *axes.values(), *shots])
        passage, grounding = self.passage(bucket, index, query)
        template_name = f"classification_{mode}_user" if passage else "classification_user"
        if mode == "rewrite":
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
            target={"label": bucket, "axes": axes, "examples": shots, FEW_SHOT: [self.example_ids[s] for s in shots],
                    **grounding, **length,
                    **({"focus": list(focus)} if focus else {})},
        )

    # -- annotate: a passage labelled by several votes ------------------------------------------

    def _vote_prompt(self, bucket: str, index: int, generator: str, target: dict[str, Any]) -> Prompt:
        """The request for the next vote on target["passage"]'s label.

        Vote k draws its few-shot examples and label order from the recipe's seed and k alone, the same
        for every passage: the votes of one wave share their whole opening, which a local model reads once
        (generators/llamacpp.py), and each passage costs its own words and a few tokens of reply."""
        vote = len(target["votes"])
        rng = random.Random(f"{self.spec.seed}/annotate/{vote}")
        names = list(self.spec.labels)
        rng.shuffle(names)  # a small model leans towards the label it read first: each vote sees another order
        shots = [(text, name) for name in names
                 for text in rng.sample(self.examples[name], min(self.spec.generate.few_shot, len(self.examples[name])))]
        rng.shuffle(shots)
        examples = "".join(f"Text: {json.dumps(text, ensure_ascii=False)}\nLabel: {name}\n\n" for text, name in shots)
        user = template("classification_annotate_user").substitute(
            context=self.spec.annotate.context or "",
            label_list="\n".join(f"- {name}: {self.spec.labels[name].description}" for name in names),
            examples=f"Labelled examples:\n{examples}" if shots else "",
            passage=target["passage"],
            reply_format=json.dumps({"label": f"<one of: {', '.join(names)}>"}),
        )
        system = template("classification_annotate_system").template
        return Prompt(
            bucket=bucket, index=index, generator=generator, seed=rng.randrange(2**31),
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            schema={"type": "object", "properties": {"label": {"type": "string", "enum": names}}, "required": ["label"]},
            target={**target, "examples": [text for text, _ in shots]},
        )

    def _vote(self, completion: Completion) -> tuple[str | None, str]:
        """The label one reply votes for, or None and why it names none."""
        if completion.error:
            return None, "request_failed"
        raw = completion.text.strip()
        reply = extract_json(raw)
        said = reply.get("label") if reply is not None else raw.strip(" .\"'")
        if isinstance(said, str) and said.strip() in self.spec.labels:
            return said.strip(), ""
        return None, "truncated" if completion.finish_reason == "length" else "unknown_label"

    def _annotated(self, prompt: Prompt, completion: Completion, record_id: str) -> Prompt | Record | Rejected:
        """The next vote's request, or the passage's row once every vote is in (rejected below the agreement)."""
        target = prompt.target
        label, failure = self._vote(completion)
        votes, failures = [*target["votes"], label], [*target["failures"], *([failure] if failure else [])]
        if len(votes) < self.spec.annotate.votes:
            return self._vote_prompt(prompt.bucket, prompt.index, prompt.generator,
                                     {k: v for k, v in target.items() if k != "examples"} | {"votes": votes, "failures": failures})
        counts = Counter(v for v in votes if v is not None)
        meta = self.meta(prompt, completion) | {"annotation": {"votes": votes}, OWN_TEXT: True}
        text = target["passage"]
        if not counts:
            reason = Counter(failures).most_common(1)[0][0]
            return Rejected(id=record_id, stage=STAGE_PARSE, reason=reason, text=text,
                            detail=f"no vote of {len(votes)} named a label of the recipe", meta=meta)
        (top, n), *rest = counts.most_common()
        agreement = n / len(votes)
        meta["annotation"]["agreement"] = meta[WEIGHT] = round(agreement, 4)
        if rest and rest[0][1] == n:
            return Rejected(id=record_id, stage=STAGE_PARSE, reason="low_agreement", text=text,
                            detail=f"the votes split evenly: {dict(counts)}", meta=meta)
        if agreement < self.spec.annotate.min_agreement:
            least = self.spec.annotate.min_agreement
            return Rejected(id=record_id, stage=STAGE_PARSE, reason="low_agreement", label=top, text=text, meta=meta,
                            detail=f"{n} of {len(votes)} votes for '{top}', under annotate.min_agreement {least}")
        return Record({"text": text}, label=top, id=record_id, meta=meta)

    def parse_rows(self, prompt: Prompt, completion: Completion, record_id: str) -> list[Record | Rejected]:
        if prompt.target.get("mode") != ANNOTATE:
            return [self.parse(prompt, completion, record_id)]
        step = self._annotated(prompt, completion, record_id)
        return [] if isinstance(step, Prompt) else [step]

    def follow_up(self, prompt: Prompt, completion: Completion) -> Prompt | None:
        if prompt.target.get("mode") != ANNOTATE:
            return None
        step = self._annotated(prompt, completion, "")
        return step if isinstance(step, Prompt) else None

    # -- a new text, written for its label -------------------------------------------------------

    def parse(self, prompt: Prompt, completion: Completion, record_id: str) -> Record | Rejected:
        if prompt.target.get("mode") == ANNOTATE:  # this reply alone (factory compare reads first replies)
            step = self._annotated(prompt, completion, record_id)
            if isinstance(step, Prompt):
                return Rejected(id=record_id, stage=STAGE_PARSE, reason="unfinished", text=prompt.target["passage"],
                                detail=f"the passage takes {self.spec.annotate.votes} votes; vote {len(step.target['votes']) + 1} follows")
            return step
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
        copied = self.copies(text, prompt, 1.0 if self.mode(prompt.bucket, prompt.index) == "rewrite" else 0.8)
        if copied:
            return reject(copied)
        if reply.get("rationale"):
            meta["rationale"] = reply["rationale"]
        return Record({"text": text}, label=target, id=record_id, meta=meta)
