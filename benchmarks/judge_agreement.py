"""How well the `judge` filter tells good instruction pairs from bad ones, with the packaged models.

The benchmark builds its labelled set from 16 questions with correct answers (written here, each
checkable): the good pairs are those; the bad pairs are the same questions with (a) another
question's answer (off-topic: a derangement) and (b) a planted factual or code error. Each model
judges every pair with the filter's own prompt, schema and parser (the default rubric); we report
the ROC AUC of its score (the mean of the criteria, as the filter's default `aggregate`) against
good/bad, the AUC on each kind of bad pair, how many verdicts were unreadable (the filter would
drop them as judge_failed), the share kept at the default threshold, and requests/s. Baseline in the
same run: a judge that scores by the word overlap of question and answer (no model).

    python benchmarks/judge_agreement.py [--models smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct,...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from sklearn.metrics import roc_auc_score

from factory.filters.base import FilterContext
from factory.filters.judge import Judge
from factory.filters.params import JudgeParams
from factory.generators import build_generator
from factory.generators.catalog import list_models
from factory.generators.params import LlamaCppParams
from factory.records import Record
from factory.text import words

PAIRS = [
    ("What is the capital of Australia?", "The capital of Australia is Canberra.",
     "The capital of Australia is Sydney."),
    ("How many days are in a leap year?", "A leap year has 366 days.", "A leap year has 365 days."),
    ("Write a Python function that returns the square of a number.",
     "def square(x):\n    return x * x", "def square(x):\n    return x + x"),
    ("What is the boiling point of water at sea level in Celsius?", "Water boils at 100 degrees Celsius at sea level.",
     "Water boils at 50 degrees Celsius at sea level."),
    ("Convert 2 kilometres to metres.", "2 kilometres are 2,000 metres.", "2 kilometres are 200 metres."),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet.",
     "Charles Dickens wrote Romeo and Juliet."),
    ("How do I reverse a list called items in Python?", "Use items.reverse() to reverse it in place, or items[::-1] "
     "for a reversed copy.", "Use items.sort() to reverse it in place."),
    ("What is 15% of 200?", "15% of 200 is 30.", "15% of 200 is 15."),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun.",
     "Mars is the planet closest to the Sun."),
    ("Give the SQL to count the rows of a table named orders.", "SELECT COUNT(*) FROM orders;",
     "DELETE FROM orders;"),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au.",
     "The chemical symbol for gold is Ag."),
    ("How many minutes are in three hours?", "Three hours are 180 minutes.", "Three hours are 300 minutes."),
    ("Name the largest ocean on Earth.", "The Pacific Ocean is the largest ocean on Earth.",
     "The Indian Ocean is the largest ocean on Earth."),
    ("Write a shell command that lists the files in the current directory.", "ls", "cd .."),
    ("What is the freezing point of water in Fahrenheit?", "Water freezes at 32 degrees Fahrenheit.",
     "Water freezes at 0 degrees Fahrenheit."),
    ("In which year did the Second World War end?", "The Second World War ended in 1945.",
     "The Second World War ended in 1918."),
]


def derangement(n: int, seed: int) -> list[int]:
    """A seeded shuffle of range(n) that moves every item: no question keeps its own answer."""
    rng = random.Random(seed)
    while True:
        order = list(range(n))
        rng.shuffle(order)
        if all(i != j for i, j in enumerate(order)):
            return order


def labelled_set(seed: int = 0) -> list[tuple[Record, int, str]]:
    """(row, 1 good / 0 bad, kind) for every good pair, an off-topic swap of each and a planted error in each."""
    answers = [good for _, good, _ in PAIRS]
    order = derangement(len(PAIRS), seed)
    rows = []
    for k, (question, good, wrong) in enumerate(PAIRS):
        rows.append((Record({"instruction": question, "response": good}, id=f"good{k}"), 1, "good"))
        rows.append((Record({"instruction": question, "response": answers[order[k]]}, id=f"swap{k}"), 0, "off_topic"))
        rows.append((Record({"instruction": question, "response": wrong}, id=f"wrong{k}"), 0, "wrong"))
    return rows


def overlap_score(record: Record) -> float:
    """The no-model baseline: Jaccard of the question's and the answer's word sets."""
    a, b = set(words(record.fields["instruction"])), set(words(record.fields["response"]))
    return len(a & b) / max(1, len(a | b))


def aucs(scores: list[float], rows: list[tuple[Record, int, str]]) -> dict[str, float]:
    out = {"all": roc_auc_score([y for _, y, _ in rows], scores)}
    for kind in ("off_topic", "wrong"):
        pick = [k for k, (_, _, c) in enumerate(rows) if c in ("good", kind)]
        out[kind] = roc_auc_score([rows[k][1] for k in pick], [scores[k] for k in pick])
    return out


async def judge_with(model: str, rows: list[tuple[Record, int, str]]) -> dict[str, object]:
    params = LlamaCppParams(backend="llamacpp", model=model, name="judge", temperature=0.0, max_tokens=400)
    generator = build_generator(params)
    generator.load()
    judge = Judge(JudgeParams()).fit(FilterContext(generators=("judge",)))
    prompts = [judge.request(record) for record, _, _ in rows]
    started = time.perf_counter()
    replies = {id(p): c async for p, c in generator.stream(prompts)}
    seconds = time.perf_counter() - started
    await generator.aclose()
    scores, failed = [], 0
    for prompt in prompts:
        verdict = judge.verdict(replies[id(prompt)])
        if isinstance(verdict, str):
            failed += 1
            scores.append(0.0)  # the filter drops an unreadable verdict: it ranks as the worst score
        else:
            scores.append(sum(s for s, _ in verdict.values()) / len(verdict))
    kept = [s >= JudgeParams().threshold for s in scores]
    return {"model": model, **{f"auc_{k}": round(v, 3) for k, v in aucs(scores, rows).items()},
            "unreadable": failed, "kept_good": sum(k for k, (_, y, _) in zip(kept, rows) if y),
            "kept_bad": sum(k for k, (_, y, _) in zip(kept, rows) if not y),
            "requests_per_s": round(len(prompts) / seconds, 3), "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="smollm2-135m-instruct,qwen2.5-coder-0.5b-instruct,qwen2.5-coder-1.5b-instruct")
    args = parser.parse_args()
    rows = labelled_set()
    good = sum(y for _, y, _ in rows)
    print(f"labelled set: {good} good pairs, {len(rows) - good} bad ({len(PAIRS)} off-topic swaps, {len(PAIRS)} planted errors)")
    baseline = aucs([overlap_score(r) for r, _, _ in rows], rows)
    print(json.dumps({"model": "baseline: question/answer word overlap", **{f"auc_{k}": round(v, 3) for k, v in baseline.items()}}))
    status = {m["name"]: m for m in list_models()}
    for model in (m.strip() for m in args.models.split(",")):
        if status.get(model, {}).get("status") != "installed":
            print(json.dumps({"model": model, "skipped": f"not installed: {status.get(model, {}).get('install', '?')}"}))
            continue
        print(json.dumps(asyncio.run(judge_with(model, rows))), flush=True)


if __name__ == "__main__":
    main()
