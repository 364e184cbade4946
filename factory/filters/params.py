"""Every filter's recipe settings, apart from the filters themselves.

A recipe is validated (`factory validate`) without importing any filter implementation or numpy:
the implementations load when a build makes its filters (`factory.filters.build_filter`).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FilterParams(BaseModel):
    """Base of every filter's parameters; subclasses add `type: Literal[...]` and their fields."""

    model_config = ConfigDict(extra="forbid")

    auto: bool = Field(
        False, description="Judge this stage in each build on the user's real training rows (never the validation rows): "
                           "a linear probe trained on the rows with the stage and without it scores them, and the stage "
                           "stays on only if it scored at least as well. The card says which way it went and why. Needs "
                           "real rows of two labels or more (a classification recipe's real_data); without, it stays on.")


class ExactDedupParams(FilterParams):
    type: Literal["exact_dedup"] = "exact_dedup"
    per_label: bool = Field(
        False, description="Only drop duplicates within the same label (cross-label copies are the `conflicts` filter's job)."
    )
    include_response: bool = Field(False, description="For instruction rows, compare instruction + response.")
    field: str | None = Field(None, description="Compare this field of each row instead of its text (a code pair's "
                                                "`solution`); a row without it never matches.")
    unique_columns: list[str] | None = Field(
        None, description="Tables: also drop a row that repeats an earlier row's value in one of these columns "
                          "(not_unique); a table recipe fills it with its `unique: true` columns.")


class QualityParams(FilterParams):
    type: Literal["quality"] = "quality"
    min_words: int = Field(3, ge=0, description="Drop a text with fewer words than this (reason too_short).")
    max_words: int | None = Field(300, ge=1, description="Drop a text with more words than this (too_long); null: no limit.")
    response_min_words: int = Field(1, ge=0, description="Instruction rows: the fewest words a response may have.")
    response_max_words: int | None = Field(None, ge=1, description="Instruction rows: the most words a response may have.")
    refusals: bool = Field(True, description="Drop refusals (refusal) and assistant boilerplate such as "
                           "'Here is an example review:' preambles (boilerplate).")
    placeholders: bool = Field(True, description="Drop unfilled placeholders: [Customer Name], {name}, <your name>, "
                               "XXX, Lorem ipsum (placeholder).")
    scaffolding: bool = Field(True, description="Drop leftover prompt scaffolding: 'Label: polite', 'OUTPUT:', "
                              "'### Response', JSON keys like \"text\": (scaffolding).")
    language: Literal["en", "de", "fr", "es", "it", "pt", "nl"] | None = Field(
        None, description="Expected language: drop a row in another script, or whose function words are clearly "
        "another language's (wrong_language); null: no check.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> QualityParams:
        if self.max_words is not None and self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) is below min_words ({self.min_words})")
        if self.response_max_words is not None and self.response_max_words < self.response_min_words:
            raise ValueError(f"response_max_words ({self.response_max_words}) is below response_min_words "
                             f"({self.response_min_words})")
        return self


class NearDedupParams(FilterParams):
    type: Literal["near_dedup"] = "near_dedup"
    threshold: float = Field(
        0.8, gt=0, le=1,
        description="Rows whose shingle-set Jaccard similarity is at least this are near duplicates; of each "
                    "cluster of them, the first row in input order is kept.",
    )
    unit: Literal["char", "word"] = Field(
        "char",
        description="Shingle unit. Characters suit short texts: a one-word edit in a 20-word row keeps char "
                    "3-gram Jaccard near 0.9, but word 3-gram Jaccard at 0.71. Characters also work for "
                    "languages written without spaces.",
    )
    ngram: int = Field(3, ge=1, le=64, description="Shingle length in units (characters or words).")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash signature length (more: better recall, slower).")
    bands: int | None = Field(
        None, ge=1,
        description="LSH bands; with `rows` unset, chosen with it to minimise the weighted false positive and "
                    "false negative probability at `threshold` (misses weigh 0.95: candidates are verified).",
    )
    rows: int | None = Field(None, ge=1, description="MinHash values per LSH band; see `bands`.")
    seed: int = Field(0, ge=0, description="Seed of the MinHash permutation and the band hashes.")
    per_label: bool = Field(
        False,
        description="Only treat rows with the same label as near duplicates. By default, near copies across "
                    "labels are deduplicated too (the `conflicts` filter judges the labels).",
    )
    include_response: bool = Field(False, description="For instruction rows, compare instruction + response.")
    field: str | None = Field(None, description="Compare this field of each row instead of its text (a code pair's "
                                                "`solution`); a row without it never matches.")

    @model_validator(mode="after")
    def _check_bands(self) -> Self:
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        for name in ("bands", "rows"):
            value = getattr(self, name)
            if value is not None and value > self.num_perm:
                raise ValueError(f"{name} = {value} exceeds num_perm = {self.num_perm}")
        return self

    def resolved_bands(self) -> tuple[int, int]:
        """(bands, rows): as given, or optimal for the threshold as datasketch computes them."""
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        if self.bands is not None:
            return self.bands, self.num_perm // self.bands
        if self.rows is not None:
            return self.num_perm // self.rows, self.rows
        from factory.minhash import optimal_bands  # the implementation, loaded only when used

        return optimal_bands(self.threshold, self.num_perm)


class SemanticDedupParams(FilterParams):
    type: Literal["semantic_dedup"] = "semantic_dedup"
    threshold: float = Field(
        0.92, gt=0, le=1,
        description="Drop a row whose cosine similarity (all-MiniLM-L6-v2) to an already kept row is above this.",
    )
    scope: Literal["label", "all"] = Field(
        "label", description="Compare rows only within their own label ('label'), or across every row ('all')."
    )


class ConflictsParams(FilterParams):
    type: Literal["conflicts"] = "conflicts"
    threshold: float | None = Field(
        0.95, gt=0, le=1,
        description="Rows with different labels conflict when their embedding cosine is at least this; "
        "null: only exact (normalised) copies conflict.",
    )
    resolve: Literal["drop_all", "classifier"] = Field(
        "drop_all",
        description="'drop_all': drop every row of a conflicting group; 'classifier': keep the rows whose label "
        "a linear probe on embeddings supports best (trained on real_train when it has two labels, else "
        "cross-fitted on the synthetic rows), drop the others.",
    )


class FaithfulnessParams(FilterParams):
    type: Literal["faithfulness"] = "faithfulness"
    generator: str | None = Field(
        None, description="The recipe generator that judges, by name (default: the first). A stronger model than the "
                          "writer judges better; its requests are cached like any other and counted in its stats.")
    on_error: Literal["drop", "keep"] = Field(
        "drop", description="A row whose judgement failed (request error, unreadable verdict): drop it (judge_failed) or keep it.")


DEFAULT_RUBRIC = {
    "relevance": "The response addresses exactly what the instruction asks, not a different question.",
    "correctness": "Every fact, number, step and line of code in the response is right.",
    "helpfulness": "The response is complete and clear enough for the user to act on it.",
    "harmlessness": "The response is safe, respectful and free of dangerous or unethical advice.",
}


class JudgeParams(FilterParams):
    type: Literal["judge"] = "judge"
    generator: str | None = Field(
        None, description="The recipe generator that judges, by name (default: the first). A stronger model than the "
                          "writer judges better; its requests are cached like any other and counted in the funnel.")
    rubric: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_RUBRIC),
        description="Criteria the judge scores 1-5, each with a one-sentence rationale: name -> what a 5 means "
                    "(default: relevance, correctness, helpfulness, harmlessness).")
    threshold: float = Field(3.0, ge=1, le=5, description="Drop a row whose score (see `aggregate`) is below this (low_judge_score).")
    aggregate: Literal["mean", "min"] = Field(
        "mean", description="The row's score: the mean of its criteria's scores, or the lowest (strict: any weak criterion drops it).")

    @model_validator(mode="after")
    def _rubric(self) -> Self:
        if not self.rubric:
            raise ValueError("rubric: at least one criterion is needed")
        for name in self.rubric:
            if not name.isidentifier() or not name.islower():
                raise ValueError(f"rubric: criterion {name!r} must be a lowercase name (letters, digits, _): it becomes "
                                 f"the column judge_{name}")
        return self


class LeakageParams(FilterParams):
    type: Literal["leakage"] = "leakage"
    threshold: float | None = Field(
        0.9, gt=0, le=1,
        description="Drop a row whose embedding cosine with any real row is at least this; null turns the check off.",
    )
    ngram: int = Field(3, ge=1, le=8, description="Word n-gram size of the overlap check (a shorter text is one gram).")
    ngram_threshold: float | None = Field(
        0.5, gt=0, le=1,
        description="Drop a row when this share of its n-grams appear in one real row (or Jaccard, see ngram_metric); "
        "null turns the check off.",
    )
    ngram_metric: Literal["containment", "jaccard"] = Field(
        "containment",
        description="'containment': shared n-grams / the synthetic row's n-grams (catches copied fragments); "
        "'jaccard': shared / union (only whole-row copies).",
    )
    redact: bool = Field(
        True, description="Blank the text of a dropped row: it is a near copy of the user's private rows, and "
        "rejected rows are written to rejected.jsonl.",
    )
    source_span: int | None = Field(
        12, ge=3,
        description="Grounded recipes: drop a row that repeats this many consecutive words of the passage it was "
                    "written from (reason copied_source); null allows it (for extraction, or rewrites that keep most words).",
    )

    row_distance: float = Field(
        0.01, ge=0, le=1,
        description="Tables: drop a synthetic row whose distance to the closest real row (Gower's, 0 = a copy, 1 = "
                    "nothing alike) is at most this (copies_real_row).")

    @model_validator(mode="after")
    def _one_check(self) -> LeakageParams:
        if self.threshold is None and self.ngram_threshold is None and self.source_span is None:
            raise ValueError("threshold, ngram_threshold and source_span are all null: the filter would check nothing")
        return self


class WeightParams(FilterParams):
    type: Literal["weight"] = "weight"
    sources: list[Literal["agreement", "confidence", "learned"]] = Field(
        ["agreement", "learned"], min_length=1,
        description="What a row's weight in [0, 1] is the product of. agreement: the share of an annotated row's "
                    "votes for its label (1 for a written row). confidence: a cross-fitted linear probe's probability "
                    "of the row's label (the confidence filter's, with real rows in every fold). learned: SunGen's "
                    "weight, learned on the synthetic rows with a noise-robust loss (never on validation rows).")
    min_weight: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Drop a row whose weight is below this (low_weight): a threshold on the weight instead of a "
                    "hard filter. 0: keep every row, and let the evaluators and the user's training weigh them.")
    outer_steps: int = Field(40, ge=1, le=500, description="learned: steps of the weights (the outer problem).")
    inner_steps: int = Field(25, ge=1, le=200, description="learned: gradient steps of the classifier under the weights, "
                                                           "unrolled (the inner problem).")


class ConfidenceParams(FilterParams):
    type: Literal["confidence"] = "confidence"
    min_prob: float = Field(
        0.5, ge=0.0, le=1.0,
        description="Keep a row only if the classifier gives its own label at least this probability "
                    "(0.5: with two labels, drop the rows the classifier assigns to the other one).",
    )
    classifier: Literal["linear", "setfit"] = Field(
        "linear",
        description="linear: logistic regression on the shared embeddings (fast). setfit: a SetFit model "
                    "fine-tuned from the packaged MiniLM on the real rows (slower; without real rows of two "
                    "labels the linear cross-fit is used instead).",
    )
    C: float = Field(
        10.0, gt=0,
        description="Inverse regularisation of the logistic regression (the linear probe, or SetFit's head). "
                    "sklearn's 1.0 squashes the probabilities of a model trained on a few dozen rows towards 1/L, "
                    "which makes min_prob meaningless.",
    )
    train_on: Literal["real+synthetic", "real"] = Field(
        "real+synthetic",
        description="linear probe with real rows. real+synthetic: cross-fit over the synthetic rows with every real "
                    "row in each fold's training set. real: the real rows alone. Measured on movie-reviews "
                    "(8 real rows per label, 360 Qwen rows): real alone leaned to one label and dropped 62 rows, "
                    "mostly of the other; real+synthetic dropped 5.",
    )
    folds: int = Field(5, ge=2, le=20, description="Folds of the cross-fit on the synthetic rows.")
    setfit_iterations: int = Field(
        10, ge=1, le=50, description="setfit: contrastive pairs drawn per training row and iteration (one positive, one negative)."
    )
    setfit_epochs: int = Field(1, ge=1, le=5, description="setfit: epochs of contrastive training of the body.")
    setfit_batch_size: int = Field(16, ge=2, le=256, description="setfit: pairs per training step.")
    setfit_max_length: int = Field(128, ge=16, le=512, description="setfit: tokens kept per text (longer texts are truncated).")


class CriticParams(FilterParams):
    type: Literal["critic"] = "critic"
    drop_fraction: float | None = Field(
        0.1, ge=0.0, lt=1.0,
        description="Drop this fraction of the synthetic rows, the most artificial first. Not with `threshold`.",
    )
    threshold: float | None = Field(
        None, gt=0.0, lt=1.0,
        description="Instead of a fraction, drop every synthetic row whose P(synthetic) is above this.",
    )
    min_real: int = Field(
        8, ge=2, description="Fewer real training rows than this and the critic passes every row through (and says so).",
    )
    folds: int = Field(5, ge=2, le=20, description="Cross-fitting folds over real + synthetic rows.")
    features: Literal["embedding", "style"] = Field(
        "embedding",
        description="What the critic sees. embedding: the shared sentence embeddings (topic and wording, e.g. "
                    "templated boilerplate). style: three surface measures (log words, log sentences, commas "
                    "per word), for a generator whose rows are on topic but too long and too uniform; three "
                    "weights can be learnt from a handful of real rows. Measured on movie-reviews (16 real rows, "
                    "360 Qwen rows, linear eval, 3 seeds), macro-F1 with the critic dropping 30%: embedding "
                    "0.695, style 0.726; 0.712 without the critic.",
    )
    C: float = Field(
        10.0, gt=0,
        description="Inverse regularisation of the critic's logistic regression. The ranking barely depends on it; "
                    "the scale of P(synthetic), and so `threshold`, does (sklearn's 1.0 keeps scores near 0.5).",
    )

    @model_validator(mode="after")
    def _one_rule(self) -> CriticParams:
        if self.threshold is not None:
            if self.drop_fraction is not None and "drop_fraction" in self.model_fields_set:
                raise ValueError("give either drop_fraction or threshold, not both")
            # The resolved recipe then shows the one rule in force.
            self.drop_fraction = None
        elif self.drop_fraction is None:
            raise ValueError("give drop_fraction or threshold")
        return self


class RebalanceParams(FilterParams):
    type: Literal["rebalance"] = "rebalance"
    clusters_per_label: Annotated[int, Field(ge=2)] | Literal["auto"] = Field(
        "auto",
        description='KMeans clusters per label, or "auto": the k in 2..min(max_clusters, rows/5) with the best '
                    "silhouette score. Never more than the label's distinct rows.",
    )
    max_clusters: int = Field(12, ge=2, le=64, description='"auto": the largest number of clusters tried.')
    max_share: float = Field(
        0.25, gt=0.0, le=1.0,
        description="Cap a cluster at this share of its label's rows, keeping the rows closest to its centre. "
                    "The cap is never below an even share (1/k): a label with few clusters is not cut by design.",
    )
    thin_share: float | None = Field(
        None, gt=0.0, lt=1.0, description="A cluster below this share of its label is reported as thin (default: 0.5/k).",
    )
    min_rows: int = Field(10, ge=2, description="A label with fewer rows passes through unclustered.")
    examples: int = Field(3, ge=1, le=10, description="Example texts reported per thin cluster.")
    top_up: bool = Field(
        False, description='Put a "top_up" entry in the stats: per label, the thin clusters with examples and the '
                           "rows wanted, for the build to generate more rows aimed at them.",
    )


class NoveltyParams(FilterParams):
    type: Literal["novelty"] = "novelty"
    max_rouge_l: float = Field(
        0.7, gt=0, le=1, description="Drop a row whose ROUGE-L F1 with a kept row is above this (Self-Instruct: 0.7).")
