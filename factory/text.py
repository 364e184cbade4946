"""Text normalisation shared by parsing and the dedup filters."""

from __future__ import annotations

import re
import unicodedata

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


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    if text.isascii():
        return _WORD.findall(text.lower())
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def is_refusal(text: str) -> bool:
    """True when the start of `text` is a refusal or assistant boilerplate instead of the requested text."""
    return bool(REFUSAL.search(text[:400].replace("\u2019", "'")))  # curly apostrophes too
