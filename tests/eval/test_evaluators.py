"""The three evaluators, run for real on tiny separable data: linear, SetFit, encoder fine-tuning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from factory.embeddings import Embedder
from factory.eval.evaluators import EVALUATORS, build_evaluator
from factory.eval.linear import cap_rows
from factory.records import Record

LABELS = ("positive", "negative")
POSITIVE = [
    "Works great, I would happily buy this again.",
    "Excellent quality and it arrived quickly, I love it.",
    "Fantastic kettle, boils fast and looks beautiful.",
    "Very happy with this lamp, bright and sturdy.",
    "Best purchase this year, highly recommended.",
    "Comfortable chair, easy to assemble and solid.",
]
NEGATIVE = [
    "Broke after two days, total waste of money.",
    "Terrible quality, it feels cheap and flimsy.",
    "Awful product, I want a refund immediately.",
    "Stopped working within a week, very disappointed.",
    "The worst purchase I have made, do not buy.",
    "Cracked on arrival and customer service ignored me.",
]
VALIDATION = [
    Record({"text": "I love it, great value and works perfectly."}, "positive", id="v1"),
    Record({"text": "Brilliant blender, smooth results every time."}, "positive", id="v2"),
    Record({"text": "Superb desk, sturdy and looks lovely."}, "positive", id="v3"),
    Record({"text": "Really pleased, it does exactly what it promises."}, "positive", id="v4"),
    Record({"text": "Complete junk, it broke the first time I used it."}, "negative", id="v5"),
    Record({"text": "Horrible heater, it smells and barely warms the room."}, "negative", id="v6"),
    Record({"text": "Useless fan, it rattles and stopped after a day."}, "negative", id="v7"),
    Record({"text": "Very poor quality, returned it at once."}, "negative", id="v8"),
]

# The smallest settings that still run every phase of training: these tests check behaviour, not scores.
TINY = {
    "setfit": {"num_iterations": 1, "max_steps": 2, "batch_size": 8, "max_length": 32},
    "encoder": {"epochs": 1, "min_steps": 2, "batch_size": 8, "max_length": 32},
}


def train_rows() -> list[Record]:
    return ([Record({"text": t}, "positive", id=f"p{i}", meta={"source": "real"}) for i, t in enumerate(POSITIVE)]
            + [Record({"text": t}, "negative", id=f"n{i}", meta={"source": "real"}) for i, t in enumerate(NEGATIVE)])


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory: evaluators must leave it empty (no ./checkpoints, ./runs, ...)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def assert_untouched(cwd: Path) -> None:
    assert sorted(os.listdir(cwd)) == []


def test_registry_names_params_and_validation(embedder: Embedder) -> None:
    assert set(EVALUATORS) == {"linear", "setfit", "encoder"}
    for name, cls in EVALUATORS.items():
        assert cls.name == name
        for field_name, field in cls.Params.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"
        assert build_evaluator(name, None, embedder).params == cls.Params()
    assert build_evaluator("linear", {"C": 2.0}, embedder).params.C == 2.0
    with pytest.raises(ValidationError):
        build_evaluator("setfit", {"num_iteration": 3}, embedder)  # a typo is an error, not a silent default
    with pytest.raises(ValidationError):
        build_evaluator("encoder", {"max_length": 0}, embedder)
    with pytest.raises(KeyError, match="unknown evaluator"):
        build_evaluator("xgboost", None, embedder)


def test_linear_predicts_mostly_correct_and_is_deterministic(embedder: Embedder, workdir: Path) -> None:
    evaluator = build_evaluator("linear", None, embedder)
    first = evaluator.predict(train_rows(), VALIDATION, LABELS, seed=0)
    second = evaluator.predict(train_rows(), VALIDATION, LABELS, seed=0)
    assert len(first.predicted) == len(VALIDATION)
    assert first.gold == [r.label for r in VALIDATION]
    assert sum(p == g for p, g in zip(first.predicted, first.gold)) >= 7
    assert first.predicted == second.predicted
    assert first.info["train_rows"] == 12 and "degenerate" not in first.info
    assert_untouched(workdir)


def test_linear_survives_one_label_and_empty_training_sets(embedder: Embedder) -> None:
    evaluator = build_evaluator("linear", None, embedder)
    only_negative = [r for r in train_rows() if r.label == "negative"]
    one = evaluator.predict(only_negative, VALIDATION, LABELS, seed=0)
    assert one.predicted == ["negative"] * len(VALIDATION)
    assert one.info["degenerate"] == "one label in the training set"
    empty = evaluator.predict([], VALIDATION, LABELS, seed=0)
    assert empty.predicted == ["positive"] * len(VALIDATION)
    assert empty.info["degenerate"] == "empty training set"
    # a row whose label is not one of the task's labels is skipped, not trained on
    stray = evaluator.predict([*only_negative, Record({"text": "Meh."}, "neutral")], VALIDATION, LABELS, seed=0)
    assert stray.predicted == ["negative"] * len(VALIDATION) and stray.info["skipped_rows"] == 1
    assert evaluator.predict(train_rows(), [], LABELS, seed=0).predicted == []


def test_linear_without_an_embedder_makes_its_own_and_saves(tmp_path: Path, workdir: Path) -> None:
    joblib = pytest.importorskip("joblib")
    evaluator = build_evaluator("linear", None, None)
    result = evaluator.predict(train_rows(), VALIDATION, LABELS, seed=1, save_to=str(tmp_path / "model"))
    model = joblib.load(tmp_path / "model" / "linear.joblib")
    assert set(model.classes_) == set(LABELS)
    assert len(result.predicted) == len(VALIDATION)
    assert_untouched(workdir)


def test_setfit_trains_offline_writes_nothing_here_and_saves_a_loadable_model(tmp_path: Path, workdir: Path) -> None:
    setfit = pytest.importorskip("setfit")
    evaluator = build_evaluator("setfit", TINY["setfit"], None)
    saved = tmp_path / "setfit-model"
    result = evaluator.predict(train_rows(), VALIDATION, LABELS, seed=0, save_to=str(saved))
    assert len(result.predicted) == len(VALIDATION)
    assert set(result.predicted) <= set(LABELS)
    assert_untouched(workdir)
    reloaded = setfit.SetFitModel.from_pretrained(str(saved))
    assert list(reloaded.predict([r.text for r in VALIDATION])) == result.predicted


def test_setfit_one_label_falls_back_without_training(workdir: Path) -> None:
    evaluator = build_evaluator("setfit", TINY["setfit"], None)
    result = evaluator.predict([r for r in train_rows() if r.label == "positive"], VALIDATION, LABELS, seed=0)
    assert result.predicted == ["positive"] * len(VALIDATION)
    assert result.info["degenerate"] == "one label in the training set"


def test_encoder_is_deterministic_for_a_seed_and_saves_model_and_tokenizer(tmp_path: Path, workdir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    evaluator = build_evaluator("encoder", TINY["encoder"], None)
    saved = tmp_path / "encoder-model"
    first = evaluator.predict(train_rows(), VALIDATION, LABELS, seed=3, save_to=str(saved))
    second = evaluator.predict(train_rows(), VALIDATION, LABELS, seed=3)
    assert len(first.predicted) == len(VALIDATION)
    assert set(first.predicted) <= set(LABELS)
    assert first.predicted == second.predicted
    assert first.info["steps"] == 2
    assert_untouched(workdir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(saved)
    tokenizer = transformers.AutoTokenizer.from_pretrained(saved)
    assert model.config.id2label == dict(enumerate(LABELS))
    logits = model(**tokenizer(["Works great."], return_tensors="pt")).logits
    assert tuple(logits.shape) == (1, len(LABELS))


def test_cap_keeps_every_real_row_and_a_seeded_sample_of_the_rest() -> None:
    real = train_rows()
    synthetic = [Record({"text": f"{r.text} ({i})"}, r.label, id=f"s{i}-{r.id}") for i in range(3) for r in real]
    capped = cap_rows([*synthetic, *real], 20, seed=0)
    assert len(capped) == 20
    assert {r.id for r in real} <= {r.id for r in capped}
    assert [r.id for r in capped] == [r.id for r in cap_rows([*synthetic, *real], 20, seed=0)]
    assert [r.id for r in capped] != [r.id for r in cap_rows([*synthetic, *real], 20, seed=1)]
    assert cap_rows(real, 20, seed=0) == real


def flipped_with_weights(weight: float) -> list[Record]:
    """The clean rows (weight 1), and three wrongly labelled copies of each with `weight`: the copies win unless
    the evaluator trains with the weights."""
    clean = train_rows()
    flip = {"positive": "negative", "negative": "positive"}
    return clean + [Record(r.fields, flip[r.label], id=f"{r.id}-x{k}", meta={"weight": weight})
                    for r in clean for k in range(3)]


def accuracy(predicted: list[str]) -> float:
    return sum(p == r.label for p, r in zip(predicted, VALIDATION)) / len(VALIDATION)


@pytest.mark.parametrize("name", ["linear", "setfit"])
def test_evaluators_train_with_row_weights(name: str, embedder: Embedder, workdir: Path) -> None:
    evaluator = build_evaluator(name, TINY.get(name), embedder)
    trusted = evaluator.predict(flipped_with_weights(0.01), VALIDATION, LABELS, seed=0)
    untrusted = evaluator.predict(flipped_with_weights(1.0), VALIDATION, LABELS, seed=0)
    assert trusted.info["weighted"] and "weighted" not in untrusted.info
    assert accuracy(trusted.predicted) >= 0.75 > 0.25 >= accuracy(untrusted.predicted)


def test_a_row_of_weight_zero_is_not_trained_on(embedder: Embedder) -> None:
    predictions = build_evaluator("linear", None, embedder).predict(flipped_with_weights(0.0), VALIDATION, LABELS, seed=0)
    assert predictions.info["train_rows"] == len(POSITIVE + NEGATIVE) and accuracy(predictions.predicted) >= 0.75


def test_encoder_trains_with_a_weighted_loss(workdir: Path) -> None:
    evaluator = build_evaluator("encoder", TINY["encoder"], None)
    first = evaluator.predict(flipped_with_weights(0.01), VALIDATION, LABELS, seed=0)
    again = evaluator.predict(flipped_with_weights(0.01), VALIDATION, LABELS, seed=0)
    assert first.info["weighted"] and first.predicted == again.predicted


def test_the_weighted_loss_counts_each_row_by_its_weight() -> None:
    import torch
    import transformers

    from factory.eval.encoder_eval import _weighted_trainer

    class Logits(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor) -> transformers.modeling_outputs.SequenceClassifierOutput:
            return transformers.modeling_outputs.SequenceClassifierOutput(logits=input_ids.float())

    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    targets = torch.tensor([0, 0, 1])
    trainer = object.__new__(_weighted_trainer(transformers, torch))  # compute_loss needs no Trainer state
    loss = trainer.compute_loss(Logits(), {"input_ids": logits, "labels": targets, "weight": torch.tensor([1.0, 0.0, 0.5])})
    each = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    assert float(loss) == pytest.approx(float((each[0] + 0.5 * each[2]) / 1.5))
