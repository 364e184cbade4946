"""The instruction kind: (instruction, response) pairs, Self-Instruct style."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from factory.filters.params import ExactDedupParams, NoveltyParams
from factory.records import STAGE_PARSE, Completion, Prompt, Record, Rejected
from factory.spec import RecipeBase, Strict
from factory.tasks.base import Recipe, template

BUCKET = "all"


class InstructionExample(Strict):
    """A seed task for an instruction recipe."""

    instruction: str = Field(min_length=1, description="The instruction.")
    response: str = Field(min_length=1, description="A good response to it.")


class InstructionSpec(RecipeBase):
    """A recipe that makes (instruction, response) pairs, Self-Instruct style, or from the user's documents."""

    # qa: a question the passage answers, and the answer from the passage alone;
    # query: a search query that should find the passage (InPars); the response is the passage.
    grounding_modes: ClassVar[tuple[str, ...]] = ("qa", "query")

    task: Literal["instruction"]
    examples: list[InstructionExample] = Field(
        default_factory=list, description="Seed tasks, sampled as few-shot examples (at least one, unless the recipe has sources).")

    @model_validator(mode="after")
    def _defaults(self) -> InstructionSpec:
        if not self.examples and not self.sources:
            raise ValueError("examples: at least one seed task is needed (or `sources:` to write pairs from documents)")
        if self.generate.per_label is not None:
            raise ValueError("generate.per_label is for classification recipes; use generate.count")
        self.generate.count = self.generate.count or 50
        if not self.filters:
            self.filters = [ExactDedupParams(), NoveltyParams()]
        return self

    def buckets(self) -> dict[str, int]:
        return {BUCKET: self.generate.count or 0}

    def resize(self, *, per_label: int | None = None, count: int | None = None) -> None:
        if per_label is not None:
            raise ValueError("--per-label is for classification recipes; use --count")
        if count is not None:
            self.generate.count = count


class InstructionRecipe(Recipe[InstructionSpec]):
    """Prompts for instruction/response pairs from a task description, topic axes and seed tasks."""

    kind = "instruction"
    Spec: ClassVar[type[InstructionSpec]] = InstructionSpec
    task_categories: ClassVar[tuple[str, ...]] = ("text-generation",)
    columns: ClassVar[tuple[str, ...]] = ("instruction", "response")

    @classmethod
    def bucket(cls, record: Record) -> str:
        return BUCKET

    @classmethod
    def fields(cls, record: Record) -> dict[str, Any]:
        return {"instruction": record.fields["instruction"], "response": record.fields["response"]}

    def reply_fields(self) -> tuple[str, ...]:
        return ("query",) if self.spec.grounding.mode == "query" else ("instruction", "response")

    def schema(self) -> dict:
        props = {name: {"type": "string"} for name in self.reply_fields()}
        return {"type": "object", "properties": props, "required": list(props)}

    def prompt(self, bucket: str, index: int, generator: str | None = None, focus: Sequence[str] = ()) -> Prompt:
        rng = self.rng(bucket, index)
        axes = self.sample_axes(rng)
        shots = rng.sample(self.spec.examples, min(self.spec.generate.few_shot, len(self.spec.examples)))
        example_block = ""
        if shots:
            example_block = "Examples:\n" + "\n".join(
                json.dumps({"instruction": s.instruction, "response": s.response}) for s in shots
            ) + "\n"
        passage, grounding = self.passage(bucket, index, " ".join([*axes.values(), *(s.instruction for s in shots)]))
        mode = self.spec.grounding.mode
        formats = {"query": {"query": "<the search query>"}, "qa": {"instruction": "<the question>", "response": "<the answer>"}}
        user = template(f"instruction_{mode}_user" if passage else "instruction_user").substitute(
            description=self.spec.description or "Write an instruction and its response.",
            constraints=self.constraints(axes),
            examples=example_block + self.focus_block(focus),
            reply_format=json.dumps(formats.get(mode or "", {"instruction": "<the task>", "response": "<the answer>"})),
            passage=passage,
        )
        return Prompt(
            bucket=bucket, index=index, messages=self.messages(user),
            generator=generator or self.assign_generator(bucket, index),
            seed=rng.randrange(2**31), schema=self.schema(),
            target={"axes": axes, "examples": [s.instruction for s in shots], **grounding,
                    **({"focus": list(focus)} if focus else {})},
        )

    def parse(self, prompt: Prompt, completion: Completion, record_id: str) -> Record | Rejected:
        reply = self._reply(prompt, completion, record_id, self.reply_fields())
        if isinstance(reply, Rejected):
            return reply
        meta = self.meta(prompt, completion)
        if "query" in reply:  # InPars: the pair is (query, the passage it should find)
            reply = {"instruction": reply["query"], "response": prompt.target["passage"]}
        copied = self.copies(reply["instruction"], prompt)
        if copied:
            return Rejected(id=record_id, stage=STAGE_PARSE, reason=copied, text=reply["instruction"], meta=meta)
        return Record({"instruction": reply["instruction"], "response": reply["response"]}, id=record_id, meta=meta)
