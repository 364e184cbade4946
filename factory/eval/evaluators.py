"""The evaluator registry: the recipe's `eval.evaluators` names -> classes, and a validated builder."""

from __future__ import annotations

from typing import Any

from factory.embeddings import Embedder
from factory.eval.base import Evaluator
from factory.eval.encoder_eval import EncoderEvaluator
from factory.eval.linear import LinearEvaluator
from factory.eval.setfit_eval import SetFitEvaluator

# Importing these modules is cheap: torch, setfit and transformers load inside `predict`.
EVALUATORS: dict[str, type[Evaluator]] = {
    cls.name: cls for cls in (LinearEvaluator, SetFitEvaluator, EncoderEvaluator)
}


def build_evaluator(name: str, params: dict[str, Any] | None = None, embedder: Embedder | None = None) -> Evaluator:
    """An evaluator with `params` validated by its Params model (an unknown key is a pydantic ValidationError)."""
    try:
        cls = EVALUATORS[name]
    except KeyError:
        raise KeyError(f"unknown evaluator {name!r}; known: {sorted(EVALUATORS)}") from None
    return cls(cls.Params.model_validate(params or {}), embedder)
