"""Which passages contain one of the user's real validation rows."""

from __future__ import annotations

from collections.abc import Sequence

from factory.text import words

SPAN = 12  # words: a shared run this long is a copy, not a coincidence
MIN_WORDS = 4  # shorter rows ("No.", "Thank you.") match only a passage that is exactly them


def overlapping(passages: Sequence[str], rows: Sequence[str]) -> set[int]:
    """Indexes of the passages that hold a row: equal to it (after normalisation), containing all of
    a row shorter than SPAN words (of at least MIN_WORDS), or sharing SPAN consecutive words with it."""
    exact: set[tuple[str, ...]] = set()
    spans: dict[int, set[tuple[str, ...]]] = {}
    for row in rows:
        tokens = tuple(words(row))
        if not tokens:
            continue
        exact.add(tokens)
        if len(tokens) >= SPAN:
            spans.setdefault(SPAN, set()).update(tokens[k : k + SPAN] for k in range(len(tokens) - SPAN + 1))
        elif len(tokens) >= MIN_WORDS:
            spans.setdefault(len(tokens), set()).add(tokens)
    hits: set[int] = set()
    for index, passage in enumerate(passages):
        tokens = tuple(words(passage))
        if tokens in exact or any(
            tokens[k : k + n] in grams for n, grams in spans.items() for k in range(len(tokens) - n + 1)
        ):
            hits.add(index)
    return hits
