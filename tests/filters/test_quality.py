"""quality: what the heuristics drop, with which reason, and what they must leave alone."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from factory.filters.base import FilterContext
from factory.filters.quality import Quality, QualityParams
from factory.records import Record

LABELS = ("neutral", "somewhat polite", "polite")


def quality(**params: object) -> Quality:
    return Quality(QualityParams(**params)).fit(FilterContext(labels=LABELS, answer_fields=("response",)))


def verdict(text: str, **params: object) -> str | None:
    """The reason a single classification row is dropped, or None when kept."""
    result = quality(**params).apply([Record({"text": text}, "neutral", id="r0")])
    return result.dropped[0].reason if result.dropped else None


@pytest.mark.parametrize(("text", "reason"), [
    ("Thanks.", "too_short"),
    ("", "too_short"),
    ("😀 😀 😀", "too_short"),
    ("I'm sorry, but I can't assist with that request.", "refusal"),
    ("I’m sorry, but I can’t assist with that request.", "refusal"),  # curly apostrophes
    ("As an AI language model, I do not have opinions about parcels.", "refusal"),
    ("Sure! Here is a somewhat polite customer service response:\n\nThank you for waiting.", "boilerplate"),
    ("Certainly! Here's an example of a neutral message: the parcel arrives Monday.", "boilerplate"),
    ("Sure! Here is the text:\n\"Your parcel arrives on Monday.\"", "boilerplate"),
    ("Here are three examples of polite replies for a customer.", "boilerplate"),
    ("This text is considered neutral because it only states facts.", "boilerplate"),
    ("Dear [Customer Name], thank you for your patience.", "placeholder"),
    ("Hello {name}, your order has shipped today.", "placeholder"),
    ("Hi [customer_name], your CustomerName order shipped.", "placeholder"),
    ("Please sign here <your name> and send it back.", "placeholder"),
    ("Your order number is XXX and it ships tomorrow.", "placeholder"),
    ("Lorem ipsum dolor sit amet, consectetur adipiscing.", "placeholder"),
    ("Call us on ___ to confirm the appointment.", "placeholder"),
    ("LABEL: polite. Thank you so much for your help.", "scaffolding"),
    ("OUTPUT: Thank you so much for your help today.", "scaffolding"),
    ("Text: The package arrived late again today.", "scaffolding"),
    ("Label: polite\nThank you so much for your help.", "scaffolding"),
    ("Thank you for calling us.\n### Response\nYou are welcome.", "scaffolding"),
    ('{"text": "Thank you for calling us today", "label": "neutral"}', "scaffolding"),
    ("Thank you for calling us today\", \"label\": \"neutral\"}", "scaffolding"),
    ("Somewhat polite: could you please hold the line for me.", "scaffolding"),
    ("<|im_start|>assistant Thank you for your order today.", "scaffolding"),
])
def test_drops_with_reason(text: str, reason: str) -> None:
    assert verdict(text) == reason


@pytest.mark.parametrize("text", [
    "Certainly! Here's your refund confirmation for the order.",  # a polite opener, not a preamble
    "Sure! Here is your tracking number: 12345 for the parcel.",
    "Let me know if you have any other questions about your order.",
    "[The film] is a sharp, funny and humane piece of work.",  # a critic's editorial bracket
    "Thank you for contacting us! 😀 We will reply soon.",
    "Café au lait was naïve, but the film is charming.",
    "Stunning visuals, brilliant acting, terrible plot twists.",
    "The label on the box was torn, but everything inside was fine.",
    "Größe XXL passt perfekt, thanks for the quick delivery.",
])
def test_keeps_ordinary_text(text: str) -> None:
    assert verdict(text, language="en") is None


def test_length_bounds_and_switches() -> None:
    assert verdict("one two three", min_words=3) is None
    assert verdict("one two", min_words=3) == "too_short"
    long_text = " ".join(["word"] * 301)
    assert verdict(long_text) == "too_long"
    assert verdict(long_text, max_words=None) is None
    assert verdict("", min_words=0) is None
    # Each check can be switched off.
    assert verdict("I'm sorry, but I can't help with that today.", refusals=False) is None
    assert verdict("Dear [Customer Name], thanks for waiting.", placeholders=False) is None
    assert verdict("Label: polite. Thanks for waiting so long.", scaffolding=False) is None


def test_language_check() -> None:
    assert verdict("La película es muy buena y los actores son excelentes.", language="en") == "wrong_language"
    assert verdict("Das ist ein sehr guter Film und ich mag ihn.", language="en") == "wrong_language"
    assert verdict("Это очень хороший фильм, мне понравилось.", language="en") == "wrong_language"
    assert verdict("这部电影非常好看，我很喜欢。", language="en", min_words=0) == "wrong_language"
    assert verdict("Das ist ein sehr guter Film und ich mag ihn.", language="de") is None
    assert verdict("The film is a mess from start to finish.", language="de") == "wrong_language"
    # Off by default; too few words to judge by function words.
    assert verdict("La película es muy buena y los actores son excelentes.") is None
    assert verdict("Muy buena película.", language="en") is None
    spanish = Record({"text": "La película es muy buena y los actores son excelentes."}, "neutral", id="x")
    detail = quality(language="en").apply([spanish]).dropped[0].detail
    assert "'es'" in detail and "'en'" in detail


def test_instruction_rows_check_the_response_where_it_makes_sense() -> None:
    rows = [
        Record({"instruction": "Write a function that greets a user by name.",
                "response": "def greet(name):\n    return f'Hello {name}!'\n\nnames = [name for name in people]\n"
                            "tag = '<name>Ada</name>'\nfirst = rows[Order]\n\nOutput: Hello Ada!"}, id="ok-code"),
        Record({"instruction": "Write a haiku about autumn leaves.",
                "response": "Here is a haiku:\nRed leaves drift and fall\nquiet paths remember them\nthe wind keeps no count"},
               id="ok-preamble"),
        Record({"instruction": "Show how list comprehensions work in Python.",
                "response": "## Example\n```python\nsquares = [x * x for x in range(5)]\n```\nOutput: [0, 1, 4, 9, 16]"}, id="ok-markdown"),
        Record({"instruction": "Explain photosynthesis to a child.", "response": "I'm sorry, but I can't help with that."}, id="refused"),
        Record({"instruction": "Summarise the plot of Hamlet in two sentences.", "response": ""}, id="empty"),
        Record({"instruction": "Write a short cover letter for a barista job.",
                "response": "Dear Hiring Manager, I am applying for the barista role. Sincerely, [Your Name]"}, id="placeholder"),
        Record({"instruction": "Instruction: Write a limerick about a cat.", "response": "There once was a cat..."}, id="scaffold"),
        Record({"instruction": "Translate 'good morning' into French.", "response": "### Response\nBonjour."}, id="scaffold-response"),
        Record({"instruction": "Here is an instruction: list three prime numbers.", "response": "2, 3 and 5."}, id="boiler"),
    ]
    result = quality().apply(rows)
    assert [r.id for r in result.kept] == ["ok-code", "ok-preamble", "ok-markdown"]
    # Which fields are answers is the kind's to say: without it, the response is not judged as one.
    unjudged = Quality(QualityParams()).fit(FilterContext(labels=LABELS)).apply(rows)
    assert "refused" in [r.id for r in unjudged.kept]
    reasons = {d.id: (d.reason, d.detail) for d in result.dropped}
    assert reasons["refused"][0] == "refusal" and reasons["refused"][1].startswith("response")
    assert reasons["empty"][0] == "too_short" and reasons["empty"][1].startswith("response")
    assert reasons["placeholder"][0] == "placeholder"
    assert reasons["scaffold"][0] == "scaffolding" and reasons["scaffold"][1].startswith("text")
    assert reasons["scaffold-response"][0] == "scaffolding"
    assert reasons["boiler"][0] == "boilerplate"


def test_label_names_count_as_scaffolding_only_for_labelled_rows() -> None:
    rows = [Record({"text": "Polite: thank you kindly for waiting."}, "polite", id="a"),
            Record({"text": "Neutral\nThe parcel arrives on Monday."}, "neutral", id="b"),
            Record({"instruction": "Polite: explain what this prefix means.", "response": "It marks the tone."}, id="c")]
    result = quality().apply(rows)
    assert [d.id for d in result.dropped] == ["a", "b"]
    # Without fit there are no label names to look for, and nothing fails.
    assert Quality(QualityParams()).apply(rows[:1]).kept == rows[:1]


def test_order_details_and_determinism() -> None:
    rows = [Record({"text": t}, "neutral", id=f"r{i}") for i, t in enumerate([
        "Your parcel arrives on Monday morning.", "ok", "Thank you for waiting so patiently.",
        "As an AI, I cannot write that.", "We have restocked the blue kettles.",
    ])]
    first, second = quality().apply(rows), quality().apply(rows)
    assert [r.id for r in first.kept] == ["r0", "r2", "r4"]
    assert [(d.id, d.reason) for d in first.dropped] == [("r1", "too_short"), ("r3", "refusal")]
    assert all(d.stage == "quality" and d.detail for d in first.dropped)
    assert first.dropped[1].detail == "text reads as a refusal: 'As an AI'"
    assert [(d.id, d.detail) for d in first.dropped] == [(d.id, d.detail) for d in second.dropped]


def test_edge_cases() -> None:
    assert quality().apply([]).kept == []
    same = [Record({"text": "Thank you for your order today."}, "neutral", id=f"r{i}") for i in range(5)]
    assert len(quality().apply(same).kept) == 5  # identical rows are the dedup filters' business
    assert len(quality().apply(same[:1]).kept) == 1
    very_long = " ".join(["The parcel arrives on Monday."] * 2000)
    assert verdict(very_long) == "too_long"


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        QualityParams(min_words=5, max_words=2)
    with pytest.raises(ValidationError):
        QualityParams(language="xx")
    with pytest.raises(ValidationError):
        QualityParams(min_word=3)  # extra="forbid" catches typos
    assert QualityParams.model_validate({"type": "quality", "language": "en"}).language == "en"
