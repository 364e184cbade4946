"""The code kind: (task, solution, tests) triples kept only when the solution passes its tests in the sandbox.

Each prompt asks for a task statement, a Python solution and assert-based tests as one JSON object.
The reply's code runs in the sandbox (factory/code/verify.py) in a worker thread per core, so the
build goes on generating while solutions run. A failure goes back to the model with its trimmed
traceback as a chat continuation (`repair_rounds` times, each a follow-up request through the cache);
what still fails is a rejected row with its reason (tests_failed, crashed, early_exit, untrusted_value,
timeout or no_tests: verify.py) and the output as its detail. Tests that assert nothing or also pass
for a stub of the solution are no_tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from statistics import median
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from factory.code.verify import PASSED, Outcome, verify
from factory.filters.params import ExactDedupParams, NearDedupParams, NoveltyParams
from factory.records import STAGE_PARSE, Completion, Conversation, Prompt, Record, Rejected
from factory.sandbox import Limits
from factory.spec import CountSpec, Strict
from factory.tasks.base import Recipe, template

BUCKET = CountSpec.BUCKET
_FENCE = re.compile(r"^```[a-zA-Z0-9_+-]*\n(.*?)\n?```\s*$", re.DOTALL)


class CodeExample(Strict):
    """A seed task: its statement, a correct solution and its tests."""

    instruction: str = Field(min_length=1, description="The task statement.")
    solution: str = Field(min_length=1, description="A correct solution.")
    tests: str = Field(min_length=1, description="Assert-based tests of the solution.")


class CodeRunSpec(Strict):
    """Limits of one sandboxed run of a solution's tests, and how many run at once."""

    seconds: float = Field(10, gt=0, le=300, description="Wall-clock limit of one run (reason timeout).")
    memory_mb: int = Field(512, ge=64, le=16384, description="Address-space limit of one run.")
    workers: int | None = Field(
        None, ge=0, description="Runs at once, each in its own sandboxed process (default: one per core); 0 runs them "
                                "inline, one at a time, holding up generation meanwhile (the benchmark's baseline).")


class CodeSpec(CountSpec):
    """A recipe that makes programming tasks with solutions verified by running their tests."""

    task: Literal["code"]
    language: Literal["python"] = Field("python", description="The solutions' language (Python for now).")
    examples: list[CodeExample] = Field(min_length=1, description="Seed tasks, sampled as few-shot examples.")
    repair_rounds: int = Field(2, ge=0, le=5, description="Times a failing solution goes back to the model with its error.")
    response_includes_tests: bool = Field(False, description="The dataset's response is the solution followed by its tests.")
    run: CodeRunSpec = Field(default_factory=CodeRunSpec, description="The sandboxed test runs.")

    @property
    def needs_sandbox(self) -> bool:
        return True

    @model_validator(mode="after")
    def _defaults(self) -> CodeSpec:
        if not self.filters:  # task statements: exact and Self-Instruct novelty; solutions: near copies
            self.filters = [ExactDedupParams(), NoveltyParams(), NearDedupParams(field="solution")]
        return self


def strip_fence(code: str) -> str:
    """Code without the Markdown fence a model often wraps it in."""
    found = _FENCE.match(code.strip())
    return (found.group(1) if found else code).strip() + "\n"


class CodeRecipe(Recipe[CodeSpec]):
    """Prompts for code tasks; runs each reply's tests; asks for repairs; keeps what passes."""

    kind = "code"
    Spec: ClassVar[type[CodeSpec]] = CodeSpec
    task_categories: ClassVar[tuple[str, ...]] = ("text-generation",)
    columns: ClassVar[tuple[str, ...]] = ("instruction", "response", "tests", "language", "passed_after_repairs")
    answer_fields: ClassVar[tuple[str, ...]] = ("solution",)  # its rows hold the solution; the dataset calls it response
    column_types: ClassVar[dict[str, str]] = {"passed_after_repairs": "int64"}

    def __init__(self, spec: CodeSpec, real_train: Sequence[Record] = (), passages: Any = None) -> None:
        super().__init__(spec, real_train, passages)
        self.limits = Limits(seconds=spec.run.seconds, memory_mb=spec.run.memory_mb)
        self.workers = spec.run.workers if spec.run.workers is not None else (os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None  # made on the first run: a re-read recipe starts no threads
        self.checked: dict[tuple[str, int, int], Outcome | Rejected] = {}  # (bucket, index, attempt) -> its run
        self.ended: dict[tuple[str, int], tuple[str, int, float]] = {}  # prompt -> (reason, repairs, seconds)

    @classmethod
    def bucket(cls, record: Record) -> str:
        return BUCKET

    @classmethod
    def fields(cls, record: Record) -> dict[str, Any]:
        return {"instruction": record.fields["instruction"], "response": record.meta["response"],
                "tests": record.fields["tests"], "language": record.meta["language"],
                "passed_after_repairs": record.meta["passed_after_repairs"]}

    @classmethod
    def conversation(cls, row: dict[str, Any], recipe: dict[str, Any]) -> Conversation:
        return Conversation([(row["instruction"], row["response"])])

    # -- prompts --------------------------------------------------------------------------------

    def prompt(self, bucket: str, index: int, generator: str | None = None, focus: Sequence[str] = ()) -> Prompt:
        rng = self.rng(bucket, index)
        axes = self.sample_axes(rng)
        shots = rng.sample(self.spec.examples, min(self.spec.generate.few_shot, len(self.spec.examples)))
        examples = ("Examples:\n" + "\n".join(json.dumps(s.model_dump()) for s in shots) + "\n") if shots else ""
        user = template("code_user").substitute(description=self.spec.description, constraints=self.constraints(axes),
                                                examples=examples + self.focus_block(focus))
        props = {name: {"type": "string"} for name in ("instruction", "solution", "tests")}
        return Prompt(bucket=bucket, index=index, messages=self.messages(user),
                      generator=generator or self.assign_generator(bucket, index), seed=rng.randrange(2**31),
                      schema={"type": "object", "properties": props, "required": list(props)},
                      target={"axes": axes, "examples": [s.instruction for s in shots], "attempt": 0})

    def follow_up(self, prompt: Prompt, completion: Completion) -> Prompt | None:
        """A repair request: the conversation so far, then the failure, while repair rounds are left."""
        attempt = prompt.target["attempt"]
        outcome = self.checked.get((prompt.bucket, prompt.index, attempt))
        code = self._code(prompt, completion, "")
        if not isinstance(outcome, Outcome) or outcome.passed or attempt >= self.spec.repair_rounds or isinstance(code, Rejected):
            return None
        user = template("code_repair_user").substitute(reason=outcome.reason, detail=outcome.detail)
        props = {name: {"type": "string"} for name in ("solution", "tests")}
        rng = self.rng(prompt.bucket, prompt.index, f"repair{attempt + 1}")
        return Prompt(bucket=prompt.bucket, index=prompt.index, generator=prompt.generator, seed=rng.randrange(2**31),
                      messages=[*prompt.messages, {"role": "assistant", "content": completion.text},
                                {"role": "user", "content": user}],
                      schema={"type": "object", "properties": props, "required": list(props)},
                      target={**prompt.target, "attempt": attempt + 1, "instruction": code["instruction"]})

    # -- running the code -------------------------------------------------------------------------

    def _code(self, prompt: Prompt, completion: Completion, record_id: str) -> dict[str, str] | Rejected:
        """The reply's task statement, solution and tests (the statement from the first attempt), or why not."""
        first = prompt.target["attempt"] == 0
        reply = self._reply(prompt, completion, record_id, ("instruction", "solution", "tests") if first else ("solution", "tests"))
        if isinstance(reply, Rejected):
            return reply
        instruction = reply["instruction"] if first else prompt.target["instruction"]
        return {"instruction": instruction, "solution": strip_fence(reply["solution"]), "tests": strip_fence(reply["tests"])}

    async def examine(self, prompt: Prompt, completion: Completion) -> None:
        key = (prompt.bucket, prompt.index, prompt.target["attempt"])
        code = self._code(prompt, completion, "")
        if isinstance(code, Rejected):
            self.checked[key] = code
            return
        if not self.workers:  # inline: the event loop (and generation) waits
            self.checked[key] = verify(code["solution"], code["tests"], self.limits)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="factory-code")
        self.checked[key] = await asyncio.get_running_loop().run_in_executor(
            self._pool, verify, code["solution"], code["tests"], self.limits)

    def parse(self, prompt: Prompt, completion: Completion, record_id: str) -> Record | Rejected:
        """This reply alone (compare pairs first replies): its row, or why it is not one yet."""
        rows = self.parse_rows(prompt, completion, record_id)
        if rows:
            return rows[0]
        outcome = self.checked[(prompt.bucket, prompt.index, prompt.target["attempt"])]
        return Rejected(id=record_id, stage=STAGE_PARSE, reason=getattr(outcome, "reason", "failed"), detail="a repair follows")

    def parse_rows(self, prompt: Prompt, completion: Completion, record_id: str) -> list[Record | Rejected]:
        attempt = prompt.target["attempt"]
        outcome = self.checked.get((prompt.bucket, prompt.index, attempt))
        code = self._code(prompt, completion, record_id)
        if isinstance(code, Rejected):
            self.ended[(prompt.bucket, prompt.index)] = (code.reason, attempt, 0.0)
            return [code]
        if outcome is None:  # a caller that did not examine first
            outcome = self.checked[(prompt.bucket, prompt.index, attempt)] = verify(code["solution"], code["tests"], self.limits)
        meta = {**self.meta(prompt, completion), "language": self.spec.language, "passed_after_repairs": attempt,
                "run_seconds": outcome.seconds}
        if outcome.passed:
            self.ended[(prompt.bucket, prompt.index)] = (PASSED, attempt, outcome.seconds)
            response = code["solution"] + ("\n" + code["tests"] if self.spec.response_includes_tests else "")
            return [Record({"instruction": code["instruction"], "solution": code["solution"], "tests": code["tests"]},
                           id=record_id, meta={**meta, "response": response})]
        if attempt < self.spec.repair_rounds:
            return []  # a repair request follows
        self.ended[(prompt.bucket, prompt.index)] = (outcome.reason, attempt, outcome.seconds)
        return [Rejected(id=record_id, stage=STAGE_PARSE, reason=outcome.reason, text=code["instruction"],
                         detail=f"after {attempt} repair(s): {outcome.detail}", meta={**meta, "solution": code["solution"],
                                                                                    "tests": code["tests"]})]

    # -- what the run measured --------------------------------------------------------------------

    def report(self, final: Sequence[Record]) -> dict[str, Any] | None:
        ended = list(self.ended.values())
        if not ended:
            return None
        passed = [repairs for reason, repairs, _ in ended if reason == PASSED]
        return {"code": {
            "prompts": len(ended), "passed_first_try": sum(1 for r in passed if r == 0), "passed_after_repair": len(passed),
            "repair_rounds": self.spec.repair_rounds,
            "rejected": dict(sorted(Counter(reason for reason, _, _ in ended if reason != PASSED).items())),
            "median_run_seconds": round(median(s for _, _, s in ended if s) if any(s for _, _, s in ended) else 0.0, 3)}}

    @classmethod
    def card_section(cls, kind_report: dict[str, Any]) -> str:
        code = kind_report.get("code")
        if not code:
            return ""
        n = code["prompts"]
        rejected = ", ".join(f"{k}: {v}" for k, v in code["rejected"].items()) or "none"
        return ("## Verified by execution\n\n"
                f"Every kept solution passed its own tests in a sandbox (no network, no environment, an unprivileged "
                f"user, time, memory and process limits), and those tests fail for a stub of the solution. The tests "
                f"ran in a process of their own and the solution answered their calls from another, with plain values "
                f"only: it could not write its own verdict, change the tests or the test runner, read the expected "
                f"values, end its process early or return an object that claims to equal anything. What this does "
                f"not guarantee: that the tests are thorough. They are the model's own; a stub failing them shows "
                f"that they check something, not that they check enough. Of {n} tasks, "
                f"{code['passed_first_try']} ({code['passed_first_try'] / n:.0%}) passed on the first try and "
                f"{code['passed_after_repair']} ({code['passed_after_repair'] / n:.0%}) after up to {code['repair_rounds']} "
                f"repair round(s) with the error shown to the model; the rest were rejected ({rejected}). Median run: "
                f"{code['median_run_seconds']} s.\n")
