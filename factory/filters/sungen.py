"""Per-row weights learned on the synthetic rows themselves, with a noise-robust loss (SunGen's idea).

SunGen (Gao et al., "Self-Guided Noise-Free Data Generation for Efficient Zero-Shot Learning", ICLR 2023)
learns a weight per synthetic row by bi-level optimisation: the inner problem trains a classifier on
the rows under their weights (cross-entropy); the outer problem moves the weights so that this
classifier has a low *noise-robust* loss on the same rows. A bounded loss such as reverse
cross-entropy (proportional to 1 - p(label)) is not pulled far by a mislabelled row, so its minimum
under noisy labels is close to its minimum under clean ones, and no clean (human-labelled) row is
needed: the validation rows never enter it.

Here the inner model is a softmax regression on the run's frozen sentence embeddings, trained by a
fixed number of gradient steps from zero, unrolled so that torch's autograd carries the outer
gradient back to the weights (a truncated hypergradient, as in SunGen's implementation).

Two changes for small, uneven sets. Both losses weigh each label alike (a per-label mean): with plain means the
weights lowered the loss by giving up on the smaller label (on annotated film snippets, every row of the smaller
label sank, right as they were), and the weights are normalised per label, so that they rank rows within a label
and never shift the labels' balance. And the outer loss is cross-fitted. SunGen scores the inner model on the rows it
trained on, which is sound for its 200k rows; with a few hundred rows in 384 dimensions a linear model
can fit any single row, so a wrong row would earn its weight by fitting itself. Here each fold's rows
are scored by an inner model trained on the other folds only: a row's weight rises only when training
on it helps the model label other rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from factory.errors import require

if TYPE_CHECKING:
    import torch


def learned_weights(x: np.ndarray, labels: Sequence[int], classes: int, *, outer_steps: int = 40,
                    inner_steps: int = 25, inner_lr: float = 2.0, outer_lr: float = 0.1, l2: float = 1e-3,
                    folds: int = 4) -> np.ndarray:
    """A weight in [0, 1] per row of `x` (normalised embeddings) with label index `labels`: 1 for the rows the
    robust loss trusts most. Deterministic (every step starts from zero; folds are positions modulo `folds`)."""
    torch = require("torch", "eval")
    n = len(labels)
    if n == 0:
        return np.zeros(0)
    features = torch.as_tensor(np.asarray(x, dtype=np.float32))
    targets = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    fold_of = torch.arange(n) % max(2, min(folds, n))
    onehot = torch.nn.functional.one_hot(targets, classes).float()
    logits_of_weight = torch.zeros(n, requires_grad=True)  # sigmoid(0) = 0.5: every row starts alike
    optimiser = torch.optim.Adam([logits_of_weight], lr=outer_lr)
    with torch.enable_grad():
        for _ in range(outer_steps):
            weights = torch.sigmoid(logits_of_weight)
            outer = torch.zeros(())
            for fold in fold_of.unique():
                held = fold_of == fold
                trained = weights * (~held)  # the fold's own rows weigh 0 in its inner model
                coef = torch.zeros(features.shape[1], classes, requires_grad=True)
                bias = torch.zeros(classes, requires_grad=True)
                for _ in range(inner_steps):  # the inner problem, unrolled: weighted cross-entropy, each label alike
                    losses = torch.nn.functional.cross_entropy(features @ coef + bias, targets, reduction="none")
                    inner = _per_label_mean(losses, trained, onehot) + l2 * (coef ** 2).sum()
                    grad_coef, grad_bias = torch.autograd.grad(inner, (coef, bias), create_graph=True)
                    coef, bias = coef - inner_lr * grad_coef, bias - inner_lr * grad_bias
                # The outer problem: reverse cross-entropy with log 0 clipped to -4 is 4 * (1 - p(label)), bounded.
                chosen = torch.softmax(features @ coef + bias, dim=1).gather(1, targets[:, None]).squeeze(1)
                outer = outer + _per_label_mean(1 - chosen, held.float(), onehot)
            optimiser.zero_grad()
            outer.backward()
            optimiser.step()
    learned = torch.sigmoid(logits_of_weight).detach().numpy().astype(np.float64)
    # 1 for each label's most trusted row: the weights rank rows within a label and never shift the labels' balance.
    for label in np.unique(np.asarray(labels)):
        mine = np.asarray(labels) == label
        learned[mine] /= learned[mine].max()
    return learned


def _per_label_mean(values: torch.Tensor, weights: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """The mean over labels of each label's weighted mean of `values`: a label with fewer rows counts as much as the
    others, so the weights cannot lower the loss by giving up on a small label (which plain means reward)."""
    per_label = (weights * values) @ onehot / (weights @ onehot).clamp_min(1e-8)
    present = (weights @ onehot) > 0
    return per_label[present].mean()
