"""Text normalisation shared by parsing and the dedup filters."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# Refusals and assistant boilerplate that small models emit instead of the requested text.
REFUSAL = re.compile(
    r"\b(i'?m sorry,? (but )?i (can'?t|cannot|am unable)|i (can'?t|cannot|won'?t) (assist|help|comply|provide|create|write|generate|fulfil)"
    r"|i'?m (not able|unable) to (assist|help|provide|create|write|generate)|as an ai( language model)?\b"
    r"|i apologi[sz]e,? but|i must decline|against my (guidelines|programming))",
    re.IGNORECASE,
)
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+", re.UNICODE)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)

# ASCII fast path: NFKC leaves ASCII unchanged and casefold() equals lower() on it, so one
# translate() does the punctuation step, and str.split() uses the same whitespace as regex \s.
_ASCII_PUNCT = str.maketrans({chr(c): " " for c in range(128) if not re.match(r"[\w\s]", chr(c))})


def normalize(text: str) -> str:
    """Case-, width-, punctuation- and whitespace-insensitive form of `text`, for exact dedup.

    NFKC, casefold, every character that is neither a word character nor whitespace replaced by a
    space, whitespace runs collapsed to one space, ends stripped.
    """
    if text.isascii():
        return " ".join(text.lower().translate(_ASCII_PUNCT).split())
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


# Batch fast path for ASCII texts: joined by NUL, lower-cased and folded with one byte table
# (punctuation and whitespace to spaces), then spaces after a space or a text boundary and spaces
# before a boundary are masked out with numpy: no per-word string objects.
_BATCH = 65536


@cache
def _fold_table() -> np.ndarray:
    """Byte -> folded byte (built on first use: importing this module must not import numpy)."""
    import numpy as np

    table = np.arange(256, dtype=np.uint8)
    for c in range(128):
        if c and not re.match(r"\w", chr(c)):
            table[c] = 32
        elif "A" <= chr(c) <= "Z":
            table[c] = c + 32
    return table


def normalize_many(texts: Sequence[str]) -> list[str]:
    """`[normalize(t) for t in texts]`, two to three times faster on mostly-ASCII batches."""
    out: list[str] = []
    for start in range(0, len(texts), _BATCH):
        out.extend(_normalize_batch(texts[start:start + _BATCH]))
    return out


def _normalize_batch(texts: Sequence[str]) -> list[str]:
    import numpy as np

    plain = [t for t in texts if t.isascii()]
    joined = "\x00".join(plain)
    if not joined or joined.count("\x00") != len(plain) - 1:  # nothing to batch, or a NUL inside a text
        return [normalize(t) for t in texts]
    chars = _fold_table()[np.frombuffer(joined.encode("ascii"), dtype=np.uint8)]
    space = chars == 32
    after = np.ones_like(space)
    after[1:] = space[:-1] | (chars[:-1] == 0)
    chars = chars[~(space & after)]
    space = chars == 32
    before = np.ones_like(space)
    before[:-1] = chars[1:] == 0
    parts = iter(chars[~(space & before)].tobytes().decode("ascii").split("\x00"))
    return [next(parts) if t.isascii() else normalize(t) for t in texts]


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    if text.isascii():
        return _WORD.findall(text.lower())
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def is_refusal(text: str) -> bool:
    """True when the start of `text` is a refusal or assistant boilerplate instead of the requested text."""
    return bool(REFUSAL.search(text[:400].replace("\u2019", "'")))  # curly apostrophes too


def extract_json(text: str) -> dict[str, Any] | None:
    """The JSON object in a reply: bare, in a code fence, or the outermost {...} span."""
    candidates = [text.strip(), *_FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None
