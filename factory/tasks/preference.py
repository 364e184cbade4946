"""The preference kind: (prompt, chosen, rejected) pairs for DPO, ORPO and KTO, judged in both orders.

One row takes a chain of requests, each a pure function of the one before and its cached reply (so a
resumed build sends none twice): a prompt (given in the recipe, the user's own rows read as `sources:`,
or written by the `writer` from the description, axes and examples), one answer from each `candidates`
generator, then the `judge`'s verdict twice: the answers in their order, and reversed. A pair whose
verdict flips with the order is dropped (`position_bias`), as are ties and margins below `min_margin`.
The judge reads the prompt and answers fenced as data; an answer that speaks to its evaluator is left
out before any judge reads it (`judge_injection`).
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import quantiles
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from factory.filters.params import ExactDedupParams
from factory.judging import DATA_RULE, JUDGE_INJECTION, addresses_judge, fence
from factory.records import FEW_SHOT, STAGE_PARSE, Completion, Conversation, Message, Prompt, Record, Rejected
from factory.spec import CountSpec
from factory.tasks.base import Recipe, template
from factory.text import extract_json

BUCKET = CountSpec.BUCKET
WRITE, ANSWER, JUDGE = "write", "answer", "judge"
FORWARD, REVERSE = "forward", "reverse"
POSITION_BIAS, TIE, SMALL_MARGIN = "position_bias", "tie", "small_margin"
SCORE_RANGE = (1, 10)
DEFAULT_CRITERIA = ("The better answer does what the prompt asks, states nothing false, is complete, and is clear. "
                    "Length is no merit by itself: a short correct answer beats a long wrong or off-topic one.")


class PreferenceSpec(CountSpec):
    """A recipe that makes preference pairs: a prompt, the answer a judge preferred, and the one it did not."""

    # question: the writer asks a question that the passage answers, and the candidates answer with the passage
    # at hand; prompt: each passage is a prompt as it stands (the user's own instruction rows, read as a table).
    grounding_modes: ClassVar[tuple[str, ...]] = ("question", "prompt")
    export_formats: ClassVar[tuple[str, ...]] = ("columns", "preference", "openai", "messages", "alpaca", "sharegpt")

    task: Literal["preference"]
    prompts: list[str] = Field(default_factory=list, description="Prompts to answer, each once, in order (default: written by "
                                                                "the `writer`, or taken from `sources:`).")
    examples: list[str] = Field(default_factory=list, description="Example prompts, sampled as few-shot examples when the "
                                                                 "writer writes new prompts.")
    candidates: list[str] = Field(
        default_factory=list,
        description="The generators that answer each prompt, by name, at least two (a name may repeat: each answer gets "
                    "its own seed). Default: every generator of the recipe but the judge.")
    judge: str | None = Field(None, description="The generator that compares the answers, by name (default: the first). "
                                                "A stronger model than the candidates judges better; give it temperature 0.")
    writer: str | None = Field(None, description="The generator that writes the prompts, by name (default: the judge).")
    criteria: str = Field(DEFAULT_CRITERIA, min_length=1, description="What makes one answer better than another, for the judge.")
    min_margin: float = Field(
        1.0, ge=0, le=9,
        description="Least difference between the chosen and the rejected answer's scores (1-10, the mean of both "
                    "orders); a closer pair is dropped as small_margin (equal scores: tie).")

    @model_validator(mode="before")
    @classmethod
    def _count_given_prompts(cls, data: Any) -> Any:
        # Each given prompt once: the count is theirs unless the recipe says otherwise (before CountSpec's 50).
        generate = data.get("generate", {}) if isinstance(data, dict) else None
        if isinstance(generate, dict) and "count" not in generate and isinstance(data.get("prompts"), list) and data["prompts"]:
            data = {**data, "generate": {**generate, "count": len(data["prompts"])}}
        return data

    @model_validator(mode="after")
    def _preference(self) -> PreferenceSpec:
        names = [g.name for g in self.generators]
        for field in ("judge", "writer"):
            if getattr(self, field) is not None and getattr(self, field) not in names:
                raise ValueError(f"{field}: {getattr(self, field)!r} is not a generator of this recipe; known: {', '.join(names)}")
        self.judge = self.judge or names[0]
        self.writer = self.writer or self.judge
        self.candidates = self.candidates or [n for n in names if n != self.judge]
        unknown = [c for c in self.candidates if c not in names]
        if unknown:
            raise ValueError(f"candidates: {', '.join(map(repr, unknown))} not a generator of this recipe; known: {', '.join(names)}")
        if len(self.candidates) < 2:
            raise ValueError("candidates: at least two answers per prompt are needed (name two generators, or one twice); "
                             f"the recipe has {', '.join(names)} with {self.judge!r} judging")
        if len(self.candidates) > len(string.ascii_uppercase):
            raise ValueError(f"candidates: at most {len(string.ascii_uppercase)} answers per prompt")
        if self.prompts and self.sources:
            raise ValueError("prompts: give prompts or sources, not both")
        if not (self.prompts or self.sources or self.examples or self.description):
            raise ValueError("prompts: give prompts, sources, or a description (and examples) for the writer to write them")
        if not self.filters:
            self.filters = [ExactDedupParams()]  # one pair per prompt
        return self

    def request_budget(self) -> int:
        # Given prompts are answered once each: a dropped pair is not asked again with other seeds.
        return self.generate.max_requests or (len(self.prompts) if self.prompts else super().request_budget())


class PreferenceRecipe(Recipe[PreferenceSpec]):
    """Prompts, candidate answers and a judge's verdicts in both orders, into chosen/rejected pairs."""

    kind = "preference"
    Spec: ClassVar[type[PreferenceSpec]] = PreferenceSpec
    task_categories: ClassVar[tuple[str, ...]] = ("text-generation",)
    columns: ClassVar[tuple[str, ...]] = ("prompt", "chosen", "rejected", "chosen_generator", "rejected_generator",
                                          "chosen_score", "rejected_score", "margin", "judge_rationale")
    column_types: ClassVar[dict[str, str]] = {"chosen_score": "float64", "rejected_score": "float64", "margin": "float64"}
    # Filters hold the chosen answer to an answer's rules; the rejected one is meant to be the worse.
    answer_fields: ClassVar[tuple[str, ...]] = ("chosen",)
    export_layouts: ClassVar[dict[str, str]] = {
        "preference": "TRL's conversational preference layout: `prompt`, `chosen`, `rejected` as chat messages (DPOTrainer, ORPOTrainer)",
        "openai": "OpenAI preference fine-tuning (DPO) JSONL: `input`, `preferred_output`, `non_preferred_output`, "
                  "checked against its rules",
        "messages": "a chat `messages` column with the chosen answer (supervised tuning on the preferred answers)"}
    _TEXTS: ClassVar[tuple[str, ...]] = ("prompt", "chosen", "rejected")

    def __init__(self, spec: PreferenceSpec, *args: Any, **kwargs: Any) -> None:
        super().__init__(spec, *args, **kwargs)
        self.outcomes: dict[tuple[str, int], dict[str, Any]] = {}  # (bucket, index) -> how its chain ended, for report()

    # -- the dataset -----------------------------------------------------------------------------

    @classmethod
    def bucket(cls, record: Record) -> str:
        return BUCKET

    @classmethod
    def fields(cls, record: Record) -> dict[str, Any]:
        judged = record.meta.get("judged", {})
        return {name: record.fields[name] if name in cls._TEXTS else judged.get(name) for name in cls.columns}

    @classmethod
    def split_text(cls, record: Record) -> str:
        return record.fields["prompt"]  # near-duplicate prompts share a split, whatever their answers

    @classmethod
    def conversation(cls, row: dict[str, Any], recipe: dict[str, Any]) -> Conversation:
        return Conversation([(row["prompt"], row["chosen"])])  # supervised tuning on the preferred answers

    @classmethod
    def export_example(cls, fmt: str, row: dict[str, Any], recipe: dict[str, Any], system_prompt: str | None) -> dict[str, Any] | None:
        prompt: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
        prompt.append({"role": "user", "content": row["prompt"]})
        chosen: list[Message] = [{"role": "assistant", "content": row["chosen"]}]
        rejected: list[Message] = [{"role": "assistant", "content": row["rejected"]}]
        if fmt == "preference":  # TRL's conversational preference layout (DPOTrainer, ORPOTrainer)
            return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        if fmt == "openai":  # OpenAI's preference fine-tuning (DPO) JSONL
            return {"input": {"messages": prompt}, "preferred_output": chosen, "non_preferred_output": rejected}
        return None

    # -- the chain of requests -------------------------------------------------------------------

    def prompt(self, bucket: str, index: int, generator: str | None = None, focus: Sequence[str] = ()) -> Prompt:
        rng = self.rng(bucket, index)
        axes = self.sample_axes(rng)
        base = {"axes": axes, "answers": []}
        if self.spec.prompts:
            return self._answer_prompt(bucket, index, {**base, "prompt": self.spec.prompts[index % len(self.spec.prompts)]})
        picked = rng.sample(range(len(self.spec.examples)), min(self.spec.generate.few_shot, len(self.spec.examples)))
        shots = [self.spec.examples[i] for i in picked]
        passage, grounding = self.passage(bucket, index, " ".join([*axes.values(), *shots]))
        if passage and self.spec.grounding.mode == "prompt":
            return self._answer_prompt(bucket, index, {**base, **grounding, "prompt": passage})
        examples = ("Examples of prompts:\n" + "\n".join(json.dumps({"prompt": s}) for s in shots) + "\n") if shots else ""
        user = template("preference_question_user" if passage else "preference_write_user").substitute(
            description=self.spec.description or "Prompts a user could send to an AI assistant.",
            constraints=self.constraints(axes), examples=examples + self.focus_block(focus), passage=passage)
        # The writer's instructions are its own: the recipe's system_prompt is for the candidates' answers.
        messages: list[Message] = [{"role": "system", "content": template("preference_system").template},
                                   {"role": "user", "content": user}]
        return Prompt(bucket=bucket, index=index, messages=messages, generator=self.spec.writer or "",
                      seed=rng.randrange(2**31), schema=_object({"prompt": {"type": "string"}}),
                      target={**base, **grounding, "step": WRITE, "examples": shots,
                              FEW_SHOT: [f"examples[{i}]" for i in picked]})

    def _answer_prompt(self, bucket: str, index: int, target: dict[str, Any]) -> Prompt:
        """The request for the next candidate's answer to target["prompt"] (with its passage, when grounded)."""
        k = len(target["answers"])
        user = target["prompt"]
        if target.get("passage") and self.spec.grounding.mode == "question":
            user = template("preference_grounded_answer_user").substitute(passage=target["passage"], question=user)
        system: list[Message] = [{"role": "system", "content": self.spec.system_prompt}] if self.spec.system_prompt else []
        return Prompt(bucket=bucket, index=index, messages=[*system, {"role": "user", "content": user}],
                      generator=self.spec.candidates[k], seed=self.rng(bucket, index, f"answer{k}").randrange(2**31),
                      target={**target, "step": ANSWER, "asked": user})

    def judge_prompt(self, previous: Prompt, target: dict[str, Any], order: str) -> Prompt:
        """The judge's request for the answers in `target` shown in `order` (forward or reverse)."""
        answers = target["answers"] if order == FORWARD else target["answers"][::-1]
        letters = string.ascii_uppercase[: len(answers)]
        shown = "\n\n".join(f"Answer {letter}:\n{fence(a['text'], f'answer-{letter.lower()}')}" for letter, a in zip(letters, answers))
        reply = {"rationale": "<two sentences at most: what decides>", **{f"score_{x}": "<1-10>" for x in letters}}
        user = template("preference_judge_user").substitute(
            criteria=self.spec.criteria, prompt=fence(target["asked"], "prompt"), answers=shown, reply_format=json.dumps(reply))
        system = template("preference_judge_system").substitute(data_rule=DATA_RULE)
        score = {"type": "integer", "enum": list(range(SCORE_RANGE[0], SCORE_RANGE[1] + 1))}
        schema = _object({"rationale": {"type": "string"}, **{f"score_{x}": score for x in letters}})
        return Prompt(bucket=previous.bucket, index=previous.index, generator=self.spec.judge or "",
                      messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                      seed=self.rng(previous.bucket, previous.index, f"judge-{order}").randrange(2**31), schema=schema,
                      target={**target, "step": JUDGE, "order": order})

    def _advance(self, prompt: Prompt, completion: Completion, record_id: str) -> Prompt | Record | Rejected:
        """What this reply leads to: the chain's next request, the finished pair, or why the chain stops."""
        target, step = prompt.target, prompt.target["step"]

        def reject(reason: str, detail: str = "", text: str = "") -> Rejected:
            return Rejected(id=record_id, stage=STAGE_PARSE, reason=reason, text=text or target.get("prompt", completion.text),
                            detail=detail, meta=self.meta(prompt, completion))

        if step == WRITE:
            reply = self._reply(prompt, completion, record_id, ("prompt",))
            if isinstance(reply, Rejected):
                return reply
            if not reply["prompt"]:
                return reject("empty", "the written prompt is empty", text=completion.text)
            if copied := self.copies(reply["prompt"], prompt):
                return reject(copied, text=reply["prompt"])
            return self._answer_prompt(prompt.bucket, prompt.index, {**target, "prompt": reply["prompt"]})
        if step == ANSWER:
            if completion.error:
                return reject("request_failed", completion.error)
            if not completion.text.strip():
                return reject("empty", f"{prompt.generator}'s answer is empty")
            answer = {"generator": prompt.generator, "model": completion.model, "text": completion.text.strip(),
                      "truncated": completion.finish_reason == "length"}
            target = {**target, "answers": [*target["answers"], answer]}
            if len(target["answers"]) < len(self.spec.candidates):
                return self._answer_prompt(prompt.bucket, prompt.index, target)
            if hit := addresses_judge(target["asked"]):
                return reject(JUDGE_INJECTION, f"the prompt speaks to its evaluator: {hit!r}", text=target["asked"])
            clean = [a for a in target["answers"] if not addresses_judge(a["text"])]
            if len(clean) < 2:
                speaker = next(a for a in target["answers"] if a not in clean)
                dropped = reject(JUDGE_INJECTION, f"{speaker['generator']}'s answer speaks to its evaluator: "
                                                  f"{addresses_judge(speaker['text'])!r}; fewer than two answers left to compare",
                                 text=speaker["text"])
                dropped.meta["injected"] = len(target["answers"]) - len(clean)
                return dropped
            target = {**target, "answers": clean, "injected": len(target["answers"]) - len(clean)}
            return self.judge_prompt(prompt, target, FORWARD)
        verdict = self.verdict(completion, len(target["answers"]))
        if isinstance(verdict, str):
            return reject("judge_failed", f"{target['order']} order: {verdict}")
        verdicts = {**target.get("verdicts", {}), target["order"]: verdict}
        if target["order"] == FORWARD:
            return self.judge_prompt(prompt, {**target, "verdicts": verdicts}, REVERSE)
        return self._decide(prompt, completion, record_id, {**target, "verdicts": verdicts}, reject)

    @staticmethod
    def verdict(completion: Completion, n: int) -> dict[str, Any] | str:
        """{"scores": [score per answer as shown], "rationale"}, or why the reply is no verdict."""
        if completion.error:
            return f"the judge's request failed: {completion.error}"
        if completion.finish_reason == "length":
            return f"the verdict was cut at the judge's max_tokens after {completion.completion_tokens} tokens"
        reply = extract_json(completion.text)
        if reply is None:
            return f"unreadable verdict: {json.dumps(completion.text[:120])}"
        scores = []
        for letter in string.ascii_uppercase[:n]:
            score = reply.get(f"score_{letter}")
            if isinstance(score, str) and score.strip().isdigit():
                score = int(score.strip())
            if isinstance(score, float) and score.is_integer():
                score = int(score)
            if isinstance(score, bool) or not isinstance(score, int) or not SCORE_RANGE[0] <= score <= SCORE_RANGE[1]:
                return f"no score from 1 to 10 for answer {letter}: {json.dumps(completion.text[:120])}"
            scores.append(score)
        return {"scores": scores, "rationale": " ".join(str(reply.get("rationale", "")).split())[:400]}

    def _decide(self, prompt: Prompt, completion: Completion, record_id: str, target: dict[str, Any], reject: Any) -> Record | Rejected:
        """The pair from both orders' verdicts: the mean score of each answer decides, unless the winner flips."""
        answers, verdicts = target["answers"], target["verdicts"]
        forward = verdicts[FORWARD]["scores"]
        reverse = verdicts[REVERSE]["scores"][::-1]  # back in the answers' order
        d = decide(forward, reverse, self.spec.min_margin)
        chosen, rejected, margin, mean = d.chosen, d.rejected, d.margin, d.mean
        rationale = f"{FORWARD}: {verdicts[FORWARD]['rationale']} | {REVERSE}: {verdicts[REVERSE]['rationale']}"
        scores = f"scores {forward} in order, {reverse} reversed"
        if d.dropped == POSITION_BIAS:
            outcome = reject(POSITION_BIAS, f"the verdict flips with the order: {scores}")
        elif d.dropped == TIE:
            outcome = reject(TIE, f"{scores}")
        elif d.dropped == SMALL_MARGIN:
            outcome = reject(SMALL_MARGIN, f"margin {margin:.1f} < {self.spec.min_margin}: {scores}")
        elif answers[chosen]["truncated"]:  # a winner cut at max_tokens would teach the model to stop mid-answer
            outcome = reject("truncated", f"{answers[chosen]['generator']}'s answer won but stopped at max_tokens: {scores}",
                             text=answers[chosen]["text"])
        else:
            judged = {"chosen_generator": answers[chosen]["generator"], "rejected_generator": answers[rejected]["generator"],
                      "chosen_score": mean[chosen], "rejected_score": mean[rejected], "margin": margin, "judge_rationale": rationale}
            outcome = Record({"prompt": target["asked"], "chosen": answers[chosen]["text"], "rejected": answers[rejected]["text"]},
                             id=record_id, meta={**self.meta(prompt, completion), "judged": judged,
                                                 # the row's writer is its chosen answer's (the judge's is in judged)
                                                 "generator": answers[chosen]["generator"], "model": answers[chosen]["model"],
                                                 "rejected_model": answers[rejected]["model"]})
        outcome.meta["verdicts"] = {"margin": margin, "agree": d.orders_agree, "judge_model": completion.model}
        outcome.meta["injected"] = target.get("injected", 0)
        return outcome

    def parse_rows(self, prompt: Prompt, completion: Completion, record_id: str) -> list[Record | Rejected]:
        step = self._advance(prompt, completion, record_id)
        if isinstance(step, Prompt):
            return []
        # How the chain ended, for report(): the build parses every reply once (cached ones on a resume too).
        self.outcomes[(prompt.bucket, prompt.index)] = {"reason": getattr(step, "reason", "kept"),
                                                        "injected": step.meta.get("injected", 0), **step.meta.get("verdicts", {})}
        return [step]

    def parse(self, prompt: Prompt, completion: Completion, record_id: str) -> Record | Rejected:
        """This reply alone (factory compare reads first replies): the pair, why the chain stops, or that it goes on."""
        step = self._advance(prompt, completion, record_id)
        if isinstance(step, Prompt):
            return Rejected(id=record_id, stage=STAGE_PARSE, reason="unfinished", text=step.target.get("prompt", ""),
                            detail=f"the pair takes more requests: {step.target['step']} by {step.generator} follows")
        return step

    def follow_up(self, prompt: Prompt, completion: Completion) -> Prompt | None:
        step = self._advance(prompt, completion, "")
        return step if isinstance(step, Prompt) else None

    # -- what the card says ----------------------------------------------------------------------

    def report(self, final: Sequence[Record]) -> dict[str, Any] | None:
        ended = list(self.outcomes.values())
        if not ended:
            return None
        judged = [o for o in ended if "margin" in o]
        agreed = [o["agree"] for o in judged if o.get("agree") is not None]
        margins = sorted(r.meta["judged"]["margin"] for r in final)
        return {"preference": {
            "candidates": list(self.spec.candidates), "judge": self.spec.judge,
            "judge_models": sorted({o["judge_model"] for o in judged if o.get("judge_model")}),
            "judged_pairs": len(judged), "order_agreement": round(sum(agreed) / len(agreed), 3) if agreed else None,
            "chosen_by": dict(Counter(r.meta["judged"]["chosen_generator"] for r in final)),
            "rejected_by": dict(Counter(r.meta["judged"]["rejected_generator"] for r in final)),
            "margin": {"min": margins[0], "median": quantiles(margins, n=2)[0] if len(margins) > 1 else margins[0],
                       "max": margins[-1], "histogram": dict(sorted(Counter(f"{m:.1f}" for m in margins).items()))} if margins else {},
            "min_margin": self.spec.min_margin,
            "dropped": dict(sorted(Counter(o["reason"] for o in ended if o["reason"] != "kept").items())),
            "answers_left_out_as_injection": sum(o.get("injected", 0) for o in ended)}}

    @classmethod
    def card_section(cls, kind_report: dict[str, Any]) -> str:
        p = kind_report.get("preference")
        if not p:
            return ""
        sides = "\n".join(f"| {name} | {p['chosen_by'].get(name, 0)} | {p['rejected_by'].get(name, 0)} |"
                          for name in dict.fromkeys(p["candidates"]))
        agreement = "n/a" if p["order_agreement"] is None else f"{p['order_agreement']:.0%}"
        margin = p["margin"]
        margins = (f"min {margin['min']:.1f}, median {margin['median']:.1f}, max {margin['max']:.1f} (scores 1-10, the mean "
                   f"of both orders); kept from {p['min_margin']}") if margin else "no pair was kept"
        dropped = ", ".join(f"{k}: {v}" for k, v in p["dropped"].items()) or "none"
        return ("## How the pairs were made\n\n"
                f"Each prompt was answered by {', '.join(p['candidates'])}; the judge ({p['judge']}: "
                f"{', '.join(p['judge_models']) or 'no verdict'}) scored the answers twice, in their order and reversed, "
                f"reading them fenced as data. A pair whose verdict flipped with the order was dropped (position_bias), "
                f"as were ties and small margins. Answers that spoke to the judge were left out unread "
                f"({p['answers_left_out_as_injection']}).\n\n"
                f"- Pairs judged in both orders: {p['judged_pairs']}; the two orders agreed on the winner in {agreement}.\n"
                f"- Margin of the kept pairs: {margins}.\n- Dropped: {dropped}.\n\n"
                "| generator | chosen | rejected |\n|---|---|---|\n" + sides + "\n")


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


def _unique_best(scores: list[int]) -> int | None:
    """The index of the single highest score, or None when the top is shared."""
    best = max(scores)
    return scores.index(best) if scores.count(best) == 1 else None


@dataclass(frozen=True, slots=True)
class Decision:
    """What two verdicts (both in the answers' order) make of a pair: chosen and rejected answer, their margin
    (mean scores over both orders), whether the orders agree on the winner, and why the pair is dropped (None: kept)."""

    chosen: int
    rejected: int
    margin: float
    mean: list[float]
    orders_agree: bool | None  # None: one order saw no single winner
    dropped: str | None


def decide(forward: list[int], reverse: list[int], min_margin: float) -> Decision:
    """The pair from the scores of the answers shown in order (`forward`) and reversed (`reverse`, put back in
    the answers' order): the mean score decides, unless the single winner flips with the order."""
    mean = [(f + r) / 2 for f, r in zip(forward, reverse)]
    winners = (_unique_best(forward), _unique_best(reverse))
    chosen = max(range(len(mean)), key=lambda i: (mean[i], -i))
    rejected = min(range(len(mean)), key=lambda i: (mean[i], i))
    margin = mean[chosen] - mean[rejected]
    agree = None if None in winners else winners[0] == winners[1]
    dropped = (POSITION_BIAS if agree is False else TIE if margin == 0 else SMALL_MARGIN if margin < min_margin else None)
    return Decision(chosen, rejected, margin, mean, agree, dropped)
