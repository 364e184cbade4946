"""quality: cheap heuristics for rows that are not what was asked for.

Length, refusals and assistant boilerplate, unfilled placeholders, leftover prompt scaffolding and
the wrong language. Every check is a regular expression or a word count: no model, no new dependency.
A row gets the first reason that applies, checked on the text and then, for instruction rows, on the
response (with the subset of checks that make sense for an answer, which may contain code).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from factory.filters.base import Filter, FilterContext, FilterResult
from factory.filters.params import QualityParams
from factory.records import Record, Rejected
from factory.text import REFUSAL, words

_I = re.IGNORECASE
_M = re.MULTILINE

# Nouns a model uses to talk about the text it was asked to write ("Here is an example review:").
_META = (r"(?:examples?|texts?|sentences?|reviews?|snippets?|responses?|repl(?:y|ies)|messages?|versions?|samples?"
         r"|paragraphs?|statements?|instructions?|prompts?|answers?|outputs?|rewrites?|variations?|ones|attempt"
         r"|tweets?|comments?|passages?)")
_OPENER = r"(?:sure|certainly|of course|absolutely|okay|ok|alright)\b[\s!,.]*"

# An affirmative opener alone is not boilerplate: "Certainly! Here's your refund." is a polite
# customer-service text. It takes a meta noun, or a colon that closes the line before the text.
BOILERPLATE = [
    re.compile(rf"\A\W*(?:{_OPENER})?here(?:'s| is| are)\s+(?:a|an|some|one|two|three|four|five|\d+|my|the following"
               rf"|the (?:rewritten|requested|revised|generated))\b[^\n]{{0,100}}?\b{_META}\b", _I),
    re.compile(rf"\A\W*{_OPENER}here(?:'s| is| are)\b[^\n]{{0,100}}?:\s*(?:\n|[\"'“‘]|\Z)", _I),
    re.compile(r"\b(?:this|the above|the following|my) (?:text|example|sentence|response|message|review|snippet)"
               r" (?:is|was|has been|would be|could be) (?:an? )?(?:example|written|labell?ed|classified|generated"
               r"|designed|considered|intended|categori[sz]ed)\b", _I),
    re.compile(r"\bas an? (?:large )?language model\b|\bI(?: am|'m) (?:just )?an? (?:ai|artificial intelligence)\b", _I),
]

_PLACEHOLDER_WORDS = (r"(?:name|company|product|date|time|number|address|e-?mail|phone|insert|placeholder|your|customer"
                      r"|client|recipient|agent|brand|location|city|amount|price|link|url|title|item|store|business"
                      r"|organi[sz]ation|department|order|account|ticket)")
_PLACEHOLDER_SHARED = [
    re.compile(r"\((?:insert|your|customer|company)\s[^()\n]{1,30}\)", _I),  # (insert name)
    re.compile(r"\blorem ipsum\b", _I),
]
PLACEHOLDERS_TEXT = _PLACEHOLDER_SHARED + [
    re.compile(rf"\[[^\[\]\n]{{0,40}}?(?-i:(?<![a-z])){_PLACEHOLDER_WORDS}(?-i:(?![a-z]))[^\[\]\n]{{0,40}}\]", _I),  # [Customer Name]
    re.compile(r"<\s*(?:your|customer|company|insert|name|product|recipient|date|placeholder)\b[^<>\n]{0,40}>", _I),
    re.compile(r"\{\{?\s*[A-Za-z_][\w .-]{0,40}?\s*\}\}?"),  # {name}, {{customer_name}}
    re.compile(r"\b(?:X{3,}|x{3,})\b|_{3,}"),  # XXX, ____
]
# Code (in an instruction or an answer) is full of [...], <...>, {...} and ___; there a placeholder
# is capitalised words in brackets ("[Your Name]") or a phrase in angle brackets ("<your name>").
PLACEHOLDERS_CODE = _PLACEHOLDER_SHARED + [
    # Not after a name or a bracket: items[Order] is indexing.
    re.compile(rf"(?<![\w\])])\[(?=[A-Z])[\w'’ -]{{0,40}}?(?<![a-zA-Z])(?i:{_PLACEHOLDER_WORDS})(?![a-z])[\w'’ -]{{0,40}}\]"),
    re.compile(r"<(?:your|insert|customer|company) [^<>\n]{1,40}>", _I),
]

_FIELDS = (r"(?:labels?|output|text|response|answer|sentence|review|example|instruction|category|class"
           r"|sentiment|rationale|reasoning|explanation|assistant|user|system|human)")
_SCAFFOLD_SHARED = [
    # Template headers ("### Response"); an answer may well have its own "## Example" section.
    re.compile(r"^\s*#{1,6}\s*(?:response|instruction|input|assistant|user|system|human)\s*(?::|$)", _I | _M),
    re.compile(r"<\|[a-z_]+\|>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|</?s>"),  # chat-template tokens
]
SCAFFOLDING_TEXT = _SCAFFOLD_SHARED + [
    re.compile(rf"^\s*#{{1,6}}\s*{_FIELDS}\b", _I | _M),
    re.compile(rf"^\s*(?:\*\*)?{_FIELDS}(?:\*\*)?\s*:", _I | _M),  # "Text: ...", "Label: polite"
    re.compile(r"\b(?:LABEL|OUTPUT|TEXT|RESPONSE|INSTRUCTION|ANSWER|RATIONALE)\s*:"),
    re.compile(r"\"(?:text|label|response|instruction|rationale|reasoning|output|input|category)\"\s*:", _I),
    re.compile(r"\A\s*[{\[]\s*\"|\"\s*[}\]]\s*\Z|```"),  # the JSON or code fence around the reply
]
# An instruction or a code answer may hold "Input:", "Output:", fences or JSON of its own; there only a
# field name opening it, or the recipe's own JSON keys, is scaffolding.
SCAFFOLDING_INSTRUCTION = _SCAFFOLD_SHARED + [
    re.compile(r"\A\s*(?:\*\*)?(?:instruction|prompt|task|user|human)(?:\*\*)?\s*:", _I),
    re.compile(r"\"(?:instruction|response)\"\s*:", _I),
]
SCAFFOLDING_RESPONSE = _SCAFFOLD_SHARED + [
    re.compile(r"\A\s*(?:\*\*)?(?:response|answer|output|assistant)(?:\*\*)?\s*:", _I),
    re.compile(r"\"(?:instruction|response)\"\s*:", _I),
]

# Frequent function words; a text is in the wrong language when another list clearly beats the wanted one.
STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(ws.split()) for lang, ws in {
        "en": "the and is are was were of to in it that this with for on you i my we not be have has but they at"
              " your our will would can very so just if me what there from an a as or by do",
        "de": "der die das und ist nicht ein eine ich sie es mit auf für zu den dem von sehr aber wir ihr ihre sind"
              " war auch noch wie bitte danke kein haben wird",
        "fr": "le la les et est un une de des du je vous nous il elle pas ne que qui pour avec dans sur ce cette très"
              " mais sont était au aux merci",
        "es": "el la los las y es un una de que no por para con muy pero está son su sus lo del al gracias usted",
        "it": "il lo la gli le e è un una di che non per con molto ma sono del della questo grazie noi",
        "pt": "o a os as e é um uma de que não por para com muito mas são do da obrigado você nós",
        "nl": "de het een en is niet ik je u wij van met op voor zeer maar zijn dat dit wat bedankt heel",
    }.items()
}
_MIN_WORDS_FOR_LANGUAGE = 4
_MIN_SCRIPT_SHARE = 0.8


@dataclass(slots=True, frozen=True)
class _Profile:
    """Which checks apply to one field: a classification text, an instruction, or a response."""

    name: str  # the field named in the detail
    min_words: int
    max_words: int | None
    boilerplate: bool  # "Here is a poem:" opens a fine answer, but not a generated text or instruction
    placeholders: list[re.Pattern[str]]
    scaffolding: list[re.Pattern[str]]


class Quality(Filter):
    """Drops rows that are too short or long, refusals, boilerplate, placeholders, scaffolding, other languages."""

    type = "quality"
    Params = QualityParams
    params: QualityParams
    rowwise = True

    def fit(self, context: FilterContext) -> Self:
        super().fit(context)
        # A label name opening a line ("Somewhat polite: ...") or standing alone is the prompt's format leaking.
        names = "|".join(re.escape(label) for label in sorted(context.labels, key=len, reverse=True))
        self.label_pattern_ = re.compile(rf"^\W*(?:{names})\W*(?::|$)", _I | _M) if names else None
        return self

    def apply(self, records: Sequence[Record]) -> FilterResult:
        p = self.params
        label_pattern = getattr(self, "label_pattern_", None)
        text = _Profile("text", p.min_words, p.max_words, True, PLACEHOLDERS_TEXT,
                        SCAFFOLDING_TEXT + ([label_pattern] if label_pattern else []))
        instruction = _Profile("text", p.min_words, p.max_words, True, PLACEHOLDERS_CODE, SCAFFOLDING_INSTRUCTION)
        answers = {name: _Profile(name, p.response_min_words, p.response_max_words, False, PLACEHOLDERS_CODE,
                                  SCAFFOLDING_RESPONSE) for name in self.context.answer_fields}
        kept: list[Record] = []
        dropped: list[Rejected] = []
        for record in records:
            # A row with answers (an instruction and its response): each half by its own rules.
            present = [(record.fields[name], profile) for name, profile in answers.items() if record.fields.get(name) is not None]
            problem = self._check(record.text, instruction if present else text)
            for answer, profile in present:
                problem = problem or self._check(answer, profile)
            if problem is None:
                kept.append(record)
            else:
                dropped.append(Rejected.from_record(record, self.type, *problem))
        return FilterResult(kept, dropped)

    def _check(self, text: str, profile: _Profile) -> tuple[str, str] | None:
        """(reason, detail) for the first problem of `text`, or None."""
        p = self.params
        n = len(words(text))
        if n < profile.min_words:
            return "too_short", f"{profile.name} has {n} word{'s' * (n != 1)}, fewer than {profile.min_words}"
        if profile.max_words is not None and n > profile.max_words:
            return "too_long", f"{profile.name} has {n} words, more than {profile.max_words}"
        if p.refusals:
            plain = text[:400].replace("\u2019", "'")  # is_refusal's window; REFUSAL spells "can't" straight
            if hit := REFUSAL.search(plain):
                return "refusal", f"{profile.name} reads as a refusal: {_quote(hit)}"
            if profile.boilerplate and (hit := _search(BOILERPLATE, plain)):
                return "boilerplate", f"{profile.name} has assistant boilerplate: {_quote(hit)}"
        if p.placeholders and (hit := _search(profile.placeholders, text)):
            return "placeholder", f"{profile.name} has an unfilled placeholder: {_quote(hit)}"
        if p.scaffolding and (hit := _search(profile.scaffolding, text)):
            return "scaffolding", f"{profile.name} has leftover prompt scaffolding: {_quote(hit)}"
        if p.language and (why := _wrong_language(text, p.language)):
            return "wrong_language", f"{profile.name} {why}"
        return None


def _search(patterns: list[re.Pattern[str]], text: str) -> re.Match[str] | None:
    for pattern in patterns:
        if hit := pattern.search(text):
            return hit
    return None


def _quote(hit: re.Match[str]) -> str:
    found = " ".join(hit.group(0).split())
    return repr(found if len(found) <= 60 else found[:57] + "...")


def _is_ascii(c: str) -> bool:
    return c.isascii()


def _is_latin(c: str) -> bool:
    return ord(c) < 0x250 or 0x1E00 <= ord(c) < 0x1F00  # Basic Latin to Latin Extended-B, Latin Extended Additional


def _wrong_language(text: str, language: str) -> str | None:
    """Why `text` is not in `language`, or None: the script first, then function-word counts."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= 3:
        # English wants plain ASCII letters; the other supported languages are Latin script with accents.
        fits = _is_ascii if language == "en" else _is_latin
        share = sum(map(fits, letters)) / len(letters)
        if share < _MIN_SCRIPT_SHARE:
            script = "ASCII" if language == "en" else "Latin"
            return f"is not in the '{language}' script: {share:.0%} of its letters are {script}"
    tokens = words(text)
    if len(tokens) < _MIN_WORDS_FOR_LANGUAGE:
        return None  # too few words to judge
    hits = {lang: sum(t in stop for t in tokens) for lang, stop in STOPWORDS.items()}
    other = max((lang for lang in hits if lang != language), key=lambda lang: (hits[lang], lang))
    if hits[other] >= 2 and hits[other] > hits[language]:
        return (f"reads as '{other}' ({hits[other]} of {len(tokens)} words are its function words, "
                f"{hits[language]} are '{language}')")
    return None
