"""SetFit on the packaged MiniLM: contrastive fine-tuning of the body, then a logistic-regression head.

Offline and side-effect free: the metric is a function (the string "accuracy" makes `evaluate`
download a script), every output goes to a temporary directory (SetFit writes ./checkpoints
otherwise), and no reporting integration (wandb, tensorboard, codecarbon, ...) is started.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from typing import Any

from factory.eval.base import Evaluator, Predictions
from factory.eval.linear import prepare_training
from factory.eval.names import SETFIT
from factory.eval.params import SetFitParams
from factory.records import Record
from factory.training import train_setfit


class SetFitEvaluator(Evaluator):
    """SetFit (setfit 1.2) with the default logistic-regression head, trained fully offline."""

    name = SETFIT
    Params = SetFitParams

    def predict(self, train: Sequence[Record], validation: Sequence[Record], labels: Sequence[str], *,
                seed: int, save_to: str | None = None) -> Predictions:
        started = time.perf_counter()
        params: SetFitParams = self.params  # type: ignore[assignment]
        prepared = prepare_training(train, validation, labels, params.max_train_rows, seed, started)
        if isinstance(prepared, Predictions):
            return prepared
        texts, ys, info = prepared.texts, prepared.ys, prepared.info
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
        if prepared.weighted:
            # SetFit's contrastive pairs take no weight: the body trains on every row alike, and the head is
            # refitted with each row's weight (scikit-learn's sample_weight) on the trained body's embeddings.
            embedded = model.model_body.encode(texts, batch_size=64, show_progress_bar=False)
            model.model_head.fit(embedded, [index[y] for y in ys], sample_weight=prepared.weights)
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


def _iterations(params: SetFitParams, rows: int) -> int:
    """num_iterations, lowered so SetFit does not build (and tokenise) pairs that max_steps never reaches.

    SetFit materialises 2 x num_iterations x rows pairs up front: 80,000 for 2,000 rows at its default
    of 20, of which 100 steps x 16 use 1,600.
    """
    if params.max_steps is None:
        return params.num_iterations
    needed = math.ceil(params.max_steps * params.batch_size / (2 * max(rows, 1)))
    return max(1, min(params.num_iterations, needed))


def _save(model: Any, labels: Sequence[str], path: str) -> None:
    """`SetFitModel.from_pretrained(path)` reloads it; predictions are label names."""
    model.labels = list(labels)
    model.save_pretrained(path)
