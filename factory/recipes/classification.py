"""Classification recipes: one prompt asks for one text with a given label."""

from __future__ import annotations

import json
from collections.abc import Sequence

from factory.records import Completion, Prompt, Record, Rejected
from factory.recipes.base import Recipe, bounded_examples, template
from factory.spec import ClassificationSpec


class ClassificationRecipe(Recipe[ClassificationSpec]):
    """Prompts for (text, label) rows: label descriptions, sampled axis values and few-shot examples."""

    kind = "classification"

    def __init__(self, spec: ClassificationSpec, examples: dict[str, Sequence[str]] | None = None) -> None:
        super().__init__(spec)
        # Few-shot pools: the recipe's own examples, plus real training rows of a bounded length.
        generate = spec.generate
        self.examples = {
            label: list(dict.fromkeys([
                *spec.labels[label].examples,
                *bounded_examples((examples or {}).get(label, []), generate.example_max_words, max(generate.few_shot, 1)),
            ]))
            for label in spec.labels
        }

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
        user = template("classification_user").substitute(
            description=self.spec.description or "Write a short text for a text-classification data set.",
            label_list="\n".join(f"- {name}: {label.description}" for name, label in self.spec.labels.items()),
            label=bucket,
            constraints=self.constraints(axes),
            examples=example_block + self.focus_block(focus),
            reply_format=self.reply_format(bucket),
        )
        return Prompt(
            bucket=bucket, index=index, messages=self.messages(user),
            generator=generator or self.assign_generator(bucket, index),
            seed=rng.randrange(2**31), schema=self.schema(),
            target={"label": bucket, "axes": axes, "examples": shots, **({"focus": list(focus)} if focus else {})},
        )

    def parse(self, prompt: Prompt, completion: Completion, record_id: str) -> Record | Rejected:
        fields = ("rationale", "label", "text") if self.spec.generate.reasoning else ("label", "text")
        reply = self._reply(prompt, completion, record_id, fields)
        if isinstance(reply, Rejected):
            return reply
        text, label, target = reply["text"], reply.get("label") or prompt.bucket, prompt.bucket
        meta = self.meta(prompt, completion)

        def reject(reason: str, detail: str = "") -> Rejected:
            return Rejected(id=record_id, stage="parse", reason=reason, text=text, label=target, detail=detail, meta=meta)

        if label not in self.spec.labels:
            return reject("unknown_label", f"the reply says label '{label}'")
        if label != target:
            return reject("label_mismatch", f"asked for '{target}', the reply says '{label}'")
        copied = self.copies(text, prompt)
        if copied:
            return reject(copied)
        if reply.get("rationale"):
            meta["rationale"] = reply["rationale"]
        return Record(text=text, label=target, id=record_id, meta=meta)
