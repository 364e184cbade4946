"""Cleaning documents and cutting them into passages of a bounded number of tokens.

Tokens are words and punctuation marks (`\\w+|[^\\w\\s]`): a count that does not depend on any
model's tokenizer, about 1.3 per English word, close to what sub-word tokenizers give. Passages
end at sentence ends where one is near, so a prompt rarely shows half a sentence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\n\s*\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b\ufeff]")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_SPACES = re.compile(r"[ \t\r\f\v]+")


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def clean(text: str) -> str:
    """NFC, no control characters, spaces collapsed; paragraphs are kept as blank lines, and the line
    breaks inside one (hard-wrapped text, PDF lines) become spaces."""
    text = _CONTROL.sub("", unicodedata.normalize("NFC", text))
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.splitlines())
    paragraphs = _BLANK_LINES.split(text.strip())
    return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs if p.strip())


def _sentences(text: str) -> Iterator[str]:
    start = 0
    for match in _SENTENCE.finditer(text):
        piece = text[start : match.start()].strip()
        if piece:
            yield piece
        start = match.end()
    tail = text[start:].strip()
    if tail:
        yield tail


def _split_long(sentence: str, size: int) -> Iterator[str]:
    """A sentence over `size` tokens, cut at token boundaries (keeping its original spacing)."""
    spans = [m.span() for m in _TOKEN.finditer(sentence)]
    for k in range(0, len(spans), size):
        part = spans[k : k + size]
        yield sentence[part[0][0] : part[-1][1]]


def chunk(text: str, size: int, overlap: int) -> list[str]:
    """`text` as passages of at most `size` tokens; each repeats up to `overlap` tokens (whole
    sentences) from the end of the one before, so a fact cut at a boundary is whole in one of them."""
    units: list[tuple[str, int]] = []
    for sentence in _sentences(text):
        n = count_tokens(sentence)
        if n > size:
            units += [(part, count_tokens(part)) for part in _split_long(sentence, size)]
        elif n:
            units.append((sentence, n))
    passages: list[str] = []
    current: list[tuple[str, int]] = []
    tokens = 0
    for unit in units:
        if current and tokens + unit[1] > size:
            passages.append(" ".join(s for s, _ in current))
            carried: list[tuple[str, int]] = []
            kept = 0
            for sentence in reversed(current):  # the overlap: whole sentences from the end
                if kept + sentence[1] > overlap or kept + sentence[1] + unit[1] > size:
                    break
                carried.insert(0, sentence)
                kept += sentence[1]
            current, tokens = carried, kept
        current.append(unit)
        tokens += unit[1]
    if current:
        passages.append(" ".join(s for s, _ in current))
    return passages
