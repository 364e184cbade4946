"""leakage: drop synthetic rows that are near copies of the user's real rows (train and holdout).

A generator that saw real rows as few-shot examples may hand them back; training on a copy of a
holdout row inflates the evaluation, and publishing one leaks the user's data. Two checks: word
n-gram overlap (verbatim copying, via an inverted index) and embedding cosine (close paraphrase).
A grounded row is also checked against its own passage: a long verbatim span of the user's
documents is a copy, not a new row (`source_span`, reason copied_source), unless the row is that passage
(meta own_text: an annotated row, which a model labelled but did not write).
The rejected row's detail names the real row by split and id, never by its text, and the rejected
row's own text (a near copy of that private row) is blanked unless `redact: false`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Self

import numpy as np

from factory.filters.base import Filter, FilterContext, FilterResult
from factory.filters.params import LeakageParams
from factory.filters.similarity import best_match
from factory.records import OWN_TEXT, Record, Rejected
from factory.text import words


@dataclass(slots=True, frozen=True)
class _Match:
    row: int  # index into the real rows (train first, then holdout)
    score: float


class Leakage(Filter):
    """Drops synthetic rows that copy or closely paraphrase a real train or holdout row.

    `fit` indexes the real rows once (the pipeline applies the chain every round): word n-gram sets
    with an inverted index, and their embeddings. The overlap check uses prefix filtering: a real
    row sharing at least t·|G| of a row's grams must contain one of its |G| - ⌈t·|G|⌉ + 1 rarest
    grams, so only those grams' postings are read, and common grams cost nothing.
    """

    type = "leakage"
    Params = LeakageParams
    params: LeakageParams

    def fit(self, context: FilterContext) -> Self:
        super().fit(context)
        self.real_ = [("train", r) for r in context.real_train] + [("holdout", r) for r in context.real_holdout]
        self.grams_: list[frozenset[tuple[str, ...]]] = [self._grams(r.text) for _, r in self.real_]
        self.postings_: dict[tuple[str, ...], list[int]] = {}
        for k, grams in enumerate(self.grams_):
            for gram in grams:
                self.postings_.setdefault(gram, []).append(k)
        self.vectors_: np.ndarray | None = None
        if self.real_ and self.params.threshold is not None:
            self.vectors_ = context.embeddings().encode([r.text for _, r in self.real_])
        return self

    def apply(self, records: Sequence[Record]) -> FilterResult:
        if not hasattr(self, "real_"):
            self.fit(self.context)
        splits = {"train": len(self.context_.real_train), "holdout": len(self.context_.real_holdout)}
        if not self.real_ and not self.context.passages:
            return FilterResult(list(records), [], {"real_rows": splits, "checked": False,
                                                   "note": "no real rows: nothing to compare against, every row passes"})
        overlap = [self._overlap(r.text) for r in records] if self.params.ngram_threshold is not None else []
        cosine: list[_Match | None] = [None] * len(records)
        if self.vectors_ is not None and records:
            vectors = self.context.embeddings().encode([r.text for r in records])
            best, arg = best_match(vectors, self.vectors_)
            cosine = [_Match(int(a), min(float(b), 1.0)) if b >= self.params.threshold else None  # type: ignore[operator]
                      for b, a in zip(best, arg)]

        kept: list[Record] = []
        dropped: list[Rejected] = []
        leaked = {"train": 0, "holdout": 0}
        copied_source = 0
        gram_name = f"{self.params.ngram}-gram {self.params.ngram_metric}"
        for i, record in enumerate(records):
            hits = [(gram_name, overlap[i])] if overlap and overlap[i] else []
            hits += [("cosine", cosine[i])] if cosine[i] else []
            span = self._source_span(record)
            if span and not hits:
                copied_source += 1
                dropped.append(Rejected.from_record(record, self.type, "copied_source",
                                                    f"repeats {span} consecutive words of passage {record.meta['passage_id']}"))
                continue
            if not hits:
                kept.append(record)
                continue
            leaked[self.real_[hits[0][1].row][0]] += 1
            by_row: dict[int, list[str]] = {}
            for name, match in hits:
                by_row.setdefault(match.row, []).append(f"{name} {match.score:.2f}")
            # The real row is named by split and id only: its text is the user's private data.
            detail = "; ".join(f"near copy of real {self._name(k)} ({', '.join(scores)})" for k, scores in by_row.items())
            rejected = Rejected.from_record(record, self.type, "leakage", detail)
            if self.params.redact:
                rejected.text = ""
                rejected.meta["redacted"] = "text removed: a near copy of a real row"
            dropped.append(rejected)
        stats = {"real_rows": splits, "checked": True, "leaked": leaked}
        if self.context.passages and self.params.source_span:
            stats["copied_source"] = copied_source
        return FilterResult(kept, dropped, stats)

    def _source_span(self, record: Record) -> int:
        """The longest run of words the row shares with its grounding passage, when at least `source_span`."""
        passage = self.context.passages.get(record.meta.get("passage_id", ""))
        if not passage or not self.params.source_span or record.meta.get(OWN_TEXT):
            return 0
        mine, theirs = words(record.text), words(passage)
        run = SequenceMatcher(None, mine, theirs, autojunk=False).find_longest_match().size
        return run if run >= self.params.source_span else 0

    def _name(self, k: int) -> str:
        split, real = self.real_[k]
        position = k if split == "train" else k - len(self.context_.real_train)
        return f"{split} row {real.id or '#' + str(position)}"

    def _grams(self, text: str) -> frozenset[tuple[str, ...]]:
        tokens = words(text)
        n = self.params.ngram
        if len(tokens) < n:  # a short text is one gram, so an exact (normalised) copy still matches
            return frozenset([tuple(tokens)]) if tokens else frozenset()
        return frozenset(tuple(tokens[k : k + n]) for k in range(len(tokens) - n + 1))

    def _overlap(self, text: str) -> _Match | None:
        """The real row with the highest n-gram score at or above the threshold, if any."""
        grams = self._grams(text)
        if not grams:
            return None
        t = self.params.ngram_threshold
        assert t is not None
        # Both metrics need |shared| >= t·|grams| (Jaccard's union is at least |grams|).
        need = max(1, math.ceil(t * len(grams) - 1e-9))
        rare = sorted(grams, key=lambda g: (len(self.postings_.get(g, ())), g))[: len(grams) - need + 1]
        candidates = sorted({k for g in rare for k in self.postings_.get(g, ())})
        best: _Match | None = None
        for k in candidates:
            shared = len(grams & self.grams_[k])
            whole = len(grams) if self.params.ngram_metric == "containment" else len(grams | self.grams_[k])
            score = shared / whole
            if score >= t and (best is None or score > best.score):
                best = _Match(k, score)
        return best

