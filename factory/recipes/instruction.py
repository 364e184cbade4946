"""Instruction recipes: one prompt asks for one (instruction, response) pair."""

from __future__ import annotations

import json
from collections.abc import Sequence

from factory.records import Completion, Prompt, Record, Rejected
from factory.recipes.base import Recipe, template
from factory.spec import InstructionSpec

BUCKET = "all"


class InstructionRecipe(Recipe[InstructionSpec]):
    """Prompts for instruction/response pairs from a task description, topic axes and seed tasks."""

    kind = "instruction"

    def schema(self) -> dict:
        props = {"instruction": {"type": "string"}, "response": {"type": "string"}}
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
        user = template("instruction_user").substitute(
            description=self.spec.description or "Write an instruction and its response.",
            constraints=self.constraints(axes),
            examples=example_block + self.focus_block(focus),
            reply_format=json.dumps({"instruction": "<the task>", "response": "<the answer>"}),
        )
        return Prompt(
            bucket=bucket, index=index, messages=self.messages(user),
            generator=generator or self.assign_generator(bucket, index),
            seed=rng.randrange(2**31), schema=self.schema(),
            target={"axes": axes, "examples": [s.instruction for s in shots], **({"focus": list(focus)} if focus else {})},
        )

    def parse(self, prompt: Prompt, completion: Completion, record_id: str) -> Record | Rejected:
        reply = self._reply(prompt, completion, record_id, ("instruction", "response"))
        if isinstance(reply, Rejected):
            return reply
        meta = self.meta(prompt, completion)
        copied = self.copies(reply["instruction"], prompt)
        if copied:
            return Rejected(id=record_id, stage="parse", reason=copied, text=reply["instruction"], meta=meta)
        return Record(text=reply["instruction"], response=reply["response"], id=record_id, meta=meta)
