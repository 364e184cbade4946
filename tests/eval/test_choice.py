"""judge_stage: a stage stays on only if the probe trained on its rows scores the real training rows as well."""

from __future__ import annotations

import pytest
from test_evaluators import NEGATIVE, POSITIVE, VALIDATION

from factory.embeddings import Embedder
from factory.eval.choice import judge_stage
from factory.records import Record

LABELS = ["positive", "negative"]


def rows(texts: list[str], label: str, prefix: str) -> list[Record]:
    return [Record({"text": t}, label, id=f"{prefix}{i}") for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def test_a_stage_that_drops_the_wrong_rows_stays_on_and_one_that_keeps_only_them_goes_off(embedder: Embedder) -> None:
    right = rows(POSITIVE, "positive", "p") + rows(NEGATIVE, "negative", "n")
    wrong = rows(POSITIVE[:4], "negative", "wp") + rows(NEGATIVE[:4], "positive", "wn")
    helpful = judge_stage(right + wrong, right, VALIDATION, LABELS, embedder=embedder, seed=0)
    assert helpful["on"] and helpful["with"] > helpful["without"] and helpful["scored_on"] == len(VALIDATION)
    harmful = judge_stage(right + wrong, wrong + right[:2], VALIDATION, LABELS, embedder=embedder, seed=0)
    assert not harmful["on"] and harmful["change"]["gain"] < 0 and harmful["verdict"] in ("hurt", "within noise")


def test_without_real_rows_of_two_labels_the_stage_stays_on_unjudged(embedder: Embedder) -> None:
    right = rows(POSITIVE, "positive", "p") + rows(NEGATIVE, "negative", "n")
    choice = judge_stage(right, right[:3], VALIDATION[:2], LABELS, embedder=embedder, seed=0)
    assert choice["on"] and choice["evidence"].startswith("not judged")
