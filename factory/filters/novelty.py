"""novelty: Self-Instruct's check, dropping an instruction too similar (ROUGE-L) to one already kept."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from factory.errors import require
from factory.filters.base import Filter, FilterResult
from factory.filters.params import NoveltyParams
from factory.records import Record, Rejected


class Novelty(Filter):
    """Greedy novelty filter: rows are kept in order unless ROUGE-L to any kept row exceeds the limit.

    rouge-score is the implementation Self-Instruct used, so the 0.7 threshold means the same here.
    A cheap multiset-overlap bound skips most exact LCS computations: ROUGE-L F1 can never exceed
    the F1 of the bag-of-tokens overlap.
    """

    type = "novelty"
    Params = NoveltyParams
    params: NoveltyParams

    def apply(self, records: Sequence[Record]) -> FilterResult:
        rouge_scorer = require("rouge_score.rouge_scorer", "all")
        tokenize = require("rouge_score.tokenize", "all").tokenize
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        limit = self.params.max_rouge_l
        kept: list[Record] = []
        kept_bags: list[tuple[Counter[str], int]] = []
        dropped: list[Rejected] = []
        for record in records:
            bag = Counter(tokenize(record.text, None))
            size = sum(bag.values())
            best, best_id = 0.0, ""
            for (other_bag, other_size), other in zip(kept_bags, kept):
                common = sum((bag & other_bag).values())
                if size == 0 or other_size == 0 or 2 * common / (size + other_size) <= limit:
                    continue
                score = scorer.score(other.text, record.text)["rougeL"].fmeasure
                if score > best:
                    best, best_id = score, other.id
                if best > limit:
                    break
            if best > limit:
                dropped.append(Rejected.from_record(record, self.type, "not_novel", f"ROUGE-L {best:.2f} with {best_id}"))
            else:
                kept.append(record)
                kept_bags.append((bag, size))
        return FilterResult(kept, dropped)
