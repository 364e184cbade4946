"""The evaluator contract: train a small classifier, score it on the user's real validation rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from factory.embeddings import Embedder
from factory.eval.params import EvaluatorParams
from factory.records import Record


@dataclass(slots=True)
class Predictions:
    """Predicted labels for the validation rows, in their order (kept for paired bootstrap CIs)."""

    predicted: list[str]
    gold: list[str]
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


class Evaluator(ABC):
    """Trains on `train` rows and predicts `validation` rows. Deterministic for a seed.

    `__init__` stores params; heavy libraries import inside `predict`. The shared embedder lets the
    linear evaluator reuse the filters' embeddings.
    """

    name: ClassVar[str]
    Params: ClassVar[type[EvaluatorParams]]

    def __init__(self, params: EvaluatorParams, embedder: Embedder | None = None) -> None:
        self.params = params
        self.embedder = embedder

    @abstractmethod
    def predict(self, train: Sequence[Record], validation: Sequence[Record], labels: Sequence[str], *,
                seed: int, save_to: str | None = None) -> Predictions:
        """Fit on `train` (text, label), predict every validation row; optionally save the model to `save_to`."""
