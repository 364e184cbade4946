"""Classifier training shared by the evaluators and the filters that need a classifier (confidence).

Filters import this module, never an evaluator's.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

from factory.embeddings import packaged_minilm_path
from factory.errors import require


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


def _accuracy(predictions: Any, references: Any) -> dict[str, float]:
    """SetFit's metric as a function: the string "accuracy" would fetch a script from the Hub."""
    pairs = list(zip(list(predictions), list(references)))
    return {"accuracy": sum(int(p == r) for p, r in pairs) / max(len(pairs), 1)}
