"""The instruction kind: (instruction, response) pairs, Self-Instruct style."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from factory.filters.params import ExactDedupParams, NoveltyParams
from factory.records import FEW_SHOT, STAGE_PARSE, Completion, Conversation, Message, Prompt, Record, Rejected
from factory.spec import CountSpec, Strict
from factory.tasks.base import Recipe, template, too_close

BUCKET = CountSpec.BUCKET


class InstructionExample(Strict):
    """A seed task for an instruction recipe."""

    instruction: str = Field(min_length=1, description="The instruction.")
    response: str = Field(min_length=1, description="A good response to it.")


class InstructionSpec(CountSpec):
    """A recipe that makes (instruction, response) pairs, Self-Instruct style, or from the user's documents."""

    # qa: a question the passage answers, and the answer from the passage alone;
    # query: a search query that should find the passage (InPars); the response is the passage.
    grounding_modes: ClassVar[tuple[str, ...]] = ("qa", "query")

    task: Literal["instruction"]
    examples: list[InstructionExample] = Field(
        default_factory=list, description="Seed tasks, sampled as few-shot examples (at least one, unless the recipe has sources).")
    turns: int = Field(
        1, ge=1, le=12,
        description="User/assistant turns per conversation. Above 1 the first turn is written as a pair, then each further "
                    "turn is one more request that sees the conversation so far; rows get a `messages` column, and the "
                    "request budget counts conversations.")

    @model_validator(mode="after")
    def _defaults(self) -> InstructionSpec:
        if not self.examples and not self.sources:
            raise ValueError("examples: at least one seed task is needed (or `sources:` to write pairs from documents)")
        if self.turns > 1 and self.grounding.mode == "query":
            raise ValueError("turns: a search query and its passage make one turn (grounding.mode query); use mode qa")
        if not self.filters:
            self.filters = [ExactDedupParams(), NoveltyParams()]
        return self


class InstructionRecipe(Recipe[InstructionSpec]):
    """Prompts for instruction/response pairs from a task description, topic axes and seed tasks."""

    kind = "instruction"
    Spec: ClassVar[type[InstructionSpec]] = InstructionSpec
    task_categories: ClassVar[tuple[str, ...]] = ("text-generation",)
    columns: ClassVar[tuple[str, ...]] = ("instruction", "response")
    answer_fields: ClassVar[tuple[str, ...]] = ("response",)

    @classmethod
    def bucket(cls, record: Record) -> str:
        return BUCKET

    @classmethod
    def fields(cls, record: Record) -> dict[str, Any]:
        # A conversation keeps its first turn as instruction/response (what dedup and novelty judge) and
        # every turn in `messages`.
        return {name: record.fields[name] for name in (*cls.columns, "messages") if name in record.fields}

    @classmethod
    def conversation(cls, row: dict[str, Any], recipe: dict[str, Any]) -> Conversation:
        messages = row.get("messages") or [{"role": "user", "content": row["instruction"]},
                                           {"role": "assistant", "content": row["response"]}]
        return Conversation([(messages[k]["content"], messages[k + 1]["content"]) for k in range(0, len(messages) - 1, 2)])

    @classmethod
    def export_columns(cls, row: dict[str, Any]) -> dict[str, Any]:
        return {name: row[name] for name in (*cls.columns, "messages") if name in row}

    def reply_fields(self) -> tuple[str, ...]:
        return ("query",) if self.spec.grounding.mode == "query" else ("instruction", "response")

    def schema(self) -> dict:
        props = {name: {"type": "string"} for name in self.reply_fields()}
        return {"type": "object", "properties": props, "required": list(props)}

    def prompt(self, bucket: str, index: int, generator: str | None = None, focus: Sequence[str] = ()) -> Prompt:
        rng = self.rng(bucket, index)
        axes = self.sample_axes(rng)
        picked = rng.sample(range(len(self.spec.examples)), min(self.spec.generate.few_shot, len(self.spec.examples)))
        shots = [self.spec.examples[i] for i in picked]
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
            target={"axes": axes, "examples": [s.instruction for s in shots], FEW_SHOT: [f"examples[{i}]" for i in picked],
                    **grounding,
                    **({"focus": list(focus)} if focus else {})},
        )

    # -- conversations (turns > 1): one request per further turn ------------------------------------

    def _turn(self, prompt: Prompt, completion: Completion, record_id: str) -> list[Message] | Rejected:
        """The conversation so far with this reply's turn added, or why the reply is rejected."""
        turn = prompt.target.get("turn", 1)
        if turn == 1:
            pair = self.parse(prompt, completion, record_id)
            if isinstance(pair, Rejected):
                return pair
            return [{"role": "user", "content": pair.fields["instruction"]},
                    {"role": "assistant", "content": pair.fields["response"]}]
        reply = self._reply(prompt, completion, record_id, ("user", "assistant"))
        if isinstance(reply, Rejected):
            return reply
        earlier = [m["content"] for m in prompt.target["conversation"] if m["role"] == "user"]
        if too_close(reply["user"], earlier):
            return Rejected(id=record_id, stage=STAGE_PARSE, reason="repeated_turn", text=reply["user"],
                            detail=f"turn {turn} repeats an earlier user message", meta=self.meta(prompt, completion))
        return [*prompt.target["conversation"], {"role": "user", "content": reply["user"]},
                {"role": "assistant", "content": reply["assistant"]}]

    def parse_rows(self, prompt: Prompt, completion: Completion, record_id: str) -> list[Record | Rejected]:
        if self.spec.turns == 1:
            return [self.parse(prompt, completion, record_id)]
        conversation = self._turn(prompt, completion, record_id)
        if isinstance(conversation, Rejected):
            return [conversation]
        if len(conversation) < 2 * self.spec.turns:
            return []  # the conversation goes on: its next turn is a follow-up request
        return [Record({"instruction": conversation[0]["content"], "response": conversation[1]["content"],
                        "messages": conversation}, id=record_id, meta={**self.meta(prompt, completion), "turns": self.spec.turns})]

    def follow_up(self, prompt: Prompt, completion: Completion) -> Prompt | None:
        conversation = self._turn(prompt, completion, "")
        turn = prompt.target.get("turn", 1)
        if isinstance(conversation, Rejected) or turn >= self.spec.turns:
            return None
        transcript = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in conversation)
        passage = prompt.target.get("passage")
        user = template("instruction_turn_user").substitute(
            description=self.spec.description, transcript=transcript,
            passage_block=f"The conversation is about this passage; answer from it:\n<passage>\n{passage}\n</passage>\n" if passage else "")
        rng = self.rng(prompt.bucket, prompt.index, f"turn{turn + 1}")
        schema = {"type": "object", "properties": {"user": {"type": "string"}, "assistant": {"type": "string"}},
                  "required": ["user", "assistant"]}
        return Prompt(bucket=prompt.bucket, index=prompt.index, messages=self.messages(user), generator=prompt.generator,
                      seed=rng.randrange(2**31), schema=schema,
                      target={**prompt.target, "turn": turn + 1, "conversation": conversation})

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
