"""SetFit on the packaged MiniLM: contrastive fine-tuning of the body, then a logistic-regression head.

Offline and side-effect free: the metric is a function (the string "accuracy" makes `evaluate`
download a script), every output goes to a temporary directory (SetFit writes ./checkpoints
otherwise), and no reporting integration (wandb, tensorboard, codecarbon, ...) is started.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from factory.embeddings import packaged_minilm_path
from factory.errors import require
from factory.eval.base import Evaluator, EvaluatorParams, Predictions
from factory.eval.linear import prepare_training
from factory.records import Record


class SetFitParams(EvaluatorParams):
    """Bounded SetFit settings: 10 labels x (8 real + 100 synthetic) rows take about 90 s on 2 idle cores.

    Measured on Rotten Tomatoes (macro-F1, 1,000 held-out rows, seeds 0-4; linear probe 0.592 / 0.729):
    8 real rows per label 0.601, 8 + 200 per label 0.744.
    """

    model: str | None = Field(
        None, description="Sentence-transformers model path or Hub id; null = the packaged all-MiniLM-L6-v2.",
    )
    num_iterations: int = Field(
        20, ge=1, le=100,
        description="Contrastive pairs drawn per training row and per side (positive / negative): SetFit's own "
                    "default. Lowered automatically to what max_steps can use.",
    )
    max_steps: int | None = Field(
        100, ge=1, le=10_000,
        description="Contrastive optimisation steps (batch_size pairs each), exactly: fewer distinct pairs are "
                    "cycled, more are never drawn. The time bound, whatever the row count; null = num_epochs "
                    "passes over 2 x num_iterations x rows pairs (unbounded).",
    )
    num_epochs: int = Field(1, ge=1, le=10, description="Passes over the pairs; only used when max_steps is null.")
    batch_size: int = Field(16, ge=1, le=512, description="Pairs per contrastive step.")
    body_learning_rate: float = Field(2e-5, gt=0, le=1e-2, description="AdamW learning rate of the body's contrastive phase.")
    max_length: int = Field(64, ge=8, le=512, description="Token cap per text (99% of Rotten Tomatoes snippets are under 55).")
    max_train_rows: int = Field(
        2000, ge=2, le=100_000,
        description="Training rows kept (seeded sample; real rows first). SetFit enumerates every pair of rows "
                    "before sampling, so memory grows with the square of this.",
    )


class SetFitEvaluator(Evaluator):
    """SetFit (setfit 1.2) with the default logistic-regression head, trained fully offline."""

    name = "setfit"
    Params = SetFitParams

    def predict(self, train: Sequence[Record], validation: Sequence[Record], labels: Sequence[str], *,
                seed: int, save_to: str | None = None) -> Predictions:
        started = time.perf_counter()
        params: SetFitParams = self.params  # type: ignore[assignment]
        prepared = prepare_training(train, validation, labels, params.max_train_rows, seed, started)
        if isinstance(prepared, Predictions):
            return prepared
        texts, ys, info = prepared
        index = {label: i for i, label in enumerate(labels)}
        # SetFit draws pairs with a fixed RandomState(42) over row positions: shuffling the rows with
        # our seed is what makes the pairs depend on the seed.
        order = list(range(len(texts)))
        random.Random(f"{seed}/setfit").shuffle(order)
        model, info["steps"] = train_setfit(
            [texts[i] for i in order], [index[ys[i]] for i in order], seed=seed, model=params.model,
            batch_size=params.batch_size, num_epochs=params.num_epochs, max_steps=params.max_steps,
            num_iterations=_iterations(params, len(texts)), body_learning_rate=params.body_learning_rate,
            max_length=params.max_length,
        )
        predicted: list[str] = []
        if validation:
            raw = model.predict([r.text for r in validation], batch_size=64, show_progress_bar=False, as_numpy=True)
            predicted = [labels[int(i)] for i in raw]
        if save_to is not None:
            _save(model, labels, save_to)
            info["saved_to"] = save_to
        return Predictions(
            predicted=predicted, gold=[r.label or "" for r in validation],
            seconds=time.perf_counter() - started, info=info,
        )


def train_setfit(texts: Sequence[str], targets: Sequence[int], *, seed: int, model: str | None = None,
                 head_params: dict[str, Any] | None = None, batch_size: int = 16, num_epochs: int = 1,
                 max_steps: int | None = None, num_iterations: int = 20, body_learning_rate: float = 2e-5,
                 max_length: int = 64) -> tuple[Any, int]:
    """(a trained SetFitModel, its contrastive steps): `model` (default: the packaged MiniLM) with a
    logistic-regression head (`head_params` on top of max_iter 1000 and the seed), trained on
    (text, target index) rows. Everything SetFit writes goes to a temporary folder."""
    setfit = require("setfit", "eval")
    datasets = require("datasets", "eval")
    transformers = require("transformers", "eval")
    torch = require("torch", "eval")
    setfit.logging.set_verbosity_warning()  # setfit switches its own logger to INFO on import

    trained = setfit.SetFitModel.from_pretrained(
        model or packaged_minilm_path(), head_params={"max_iter": 1000, "random_state": seed, **(head_params or {})},
    )
    trained.model_body.max_seq_length = max_length
    train_set = datasets.Dataset.from_dict({"text": list(texts), "label": list(targets)})
    with tempfile.TemporaryDirectory(prefix="factory-setfit-") as tmp:
        # transformers < 5 would default logging_dir to ./runs; 5.x ignores it (and warns if given)
        old = int(transformers.__version__.split(".")[0]) < 5
        args = setfit.TrainingArguments(
            output_dir=tmp, **({"logging_dir": tmp} if old else {}), report_to="none", save_strategy="no",
            eval_strategy="no", logging_strategy="no", logging_first_step=False, show_progress_bar=False,
            batch_size=batch_size, num_epochs=num_epochs, max_steps=max_steps or -1, num_iterations=num_iterations,
            body_learning_rate=body_learning_rate, max_length=max_length, seed=seed,
        )
        trainer = setfit.Trainer(model=trained, args=args, train_dataset=train_set, metric=_accuracy)
        for callback in (transformers.ProgressCallback, transformers.PrinterCallback):
            trainer.pop_callback(callback)  # a per-step bar for every seed x condition is noise
        if not torch.cuda.is_available():
            trainer.st_trainer.args.dataloader_pin_memory = False  # else torch warns on every run
        trainer.train()
        return trained, int(trainer.st_trainer.state.global_step)


def _iterations(params: SetFitParams, rows: int) -> int:
    """num_iterations, lowered so SetFit does not build (and tokenise) pairs that max_steps never reaches.

    SetFit materialises 2 x num_iterations x rows pairs up front: 80,000 for 2,000 rows at its default
    of 20, of which 100 steps x 16 use 1,600.
    """
    if params.max_steps is None:
        return params.num_iterations
    needed = math.ceil(params.max_steps * params.batch_size / (2 * max(rows, 1)))
    return max(1, min(params.num_iterations, needed))


def _accuracy(predictions: Any, references: Any) -> dict[str, float]:
    """SetFit's metric as a function: the string "accuracy" would fetch a script from the Hub."""
    pairs = list(zip(list(predictions), list(references)))
    return {"accuracy": sum(int(p == r) for p, r in pairs) / max(len(pairs), 1)}


def _save(model: Any, labels: Sequence[str], path: str) -> None:
    """`SetFitModel.from_pretrained(path)` reloads it; predictions are label names."""
    model.labels = list(labels)
    model.save_pretrained(path)
