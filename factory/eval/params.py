"""Every evaluator's recipe settings (`eval.params`), apart from the evaluators themselves.

The recipe schema, the registry and the runner use `EVALUATOR_PARAMS`. Light on purpose: validating a recipe imports no model library.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from factory.eval.names import ENCODER, LINEAR, SETFIT


class EvaluatorParams(BaseModel):
    """Base of every evaluator's settings; subclasses add their bounded, documented defaults."""

    model_config = ConfigDict(extra="forbid")


class LinearParams(EvaluatorParams):
    """Logistic regression on frozen embeddings; cheap enough to run hundreds of times per build."""

    C: float = Field(  # scikit-learn's name
        1.0, gt=0, le=1e6,
        description="Inverse L2 strength. Measured on Rotten Tomatoes (5 seeds): 1.0 ties 10 and 100 at 8 real "
                    "rows per label and beats them with more rows (0.729 vs 0.715 / 0.685 at 208 per label).",
    )
    max_iter: int = Field(1000, ge=10, le=100_000, description="lbfgs iteration cap (converges in well under 100 on 384-d inputs).")
    class_weight: Literal["balanced"] | None = Field(
        "balanced",
        description="'balanced' reweights labels by inverse frequency so an unbalanced synthetic set does not "
                    "shift the decision threshold; null for plain counts.",
    )


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


class EncoderParams(EvaluatorParams):
    """Bounded fine-tuning settings: (8 real + 1,000 synthetic) rows x 2 labels train in a few CPU minutes."""

    model: str | None = Field(
        None, description="Hugging Face model path or id for AutoModelForSequenceClassification; "
                          "null = the packaged all-MiniLM-L6-v2 (a fresh classification head is added).",
    )
    epochs: float = Field(3.0, gt=0, le=20, description="Passes over the (capped) training rows.")
    min_steps: int = Field(
        40, ge=0, le=5000,
        description="Least optimisation steps, whatever the row count: 16 real rows x 3 epochs would be 3 steps, "
                    "which leaves the fresh head near chance (measured 0.50 macro-F1 on Rotten Tomatoes).",
    )
    learning_rate: float = Field(
        1e-4, gt=0, le=1e-2,
        description="AdamW peak learning rate (linear warmup then decay). MiniLM-L6 with a few hundred rows "
                    "does better at 1e-4 than BERT's usual 5e-5; 2e-4 is unstable (module notes).",
    )
    max_steps: int = Field(
        200, ge=1, le=100_000,
        description="Most optimisation steps, whatever the row count: the time bound (about 0.5-1 s a step on "
                    "2 CPU cores). 2 labels x (8 real + 1,000 synthetic) rows get ~1.6 epochs instead of 3.",
    )
    warmup_ratio: float = Field(0.1, ge=0, le=0.5, description="Share of the steps spent warming the learning rate up.")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW weight decay.")
    batch_size: int = Field(16, ge=1, le=512, description="Rows per optimisation step.")
    max_length: int = Field(64, ge=8, le=512, description="Token cap per text (99% of Rotten Tomatoes snippets are under 55).")
    max_train_rows: int = Field(
        5000, ge=2, le=100_000,
        description="Training rows kept (seeded sample; real rows first); bounds tokenisation and memory, "
                    "while max_steps bounds the training time.",
    )


EVALUATOR_PARAMS: dict[str, type[EvaluatorParams]] = {LINEAR: LinearParams, SETFIT: SetFitParams, ENCODER: EncoderParams}
EvaluatorName = Literal[tuple(EVALUATOR_PARAMS)]  # type: ignore[valid-type]
