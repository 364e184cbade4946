"""Prompt building and reply parsing: deterministic prompts, and every bad reply becomes a reason."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from factory.recipe_file import parse_recipe
from factory.records import Completion, Record, Rejected
from factory.tasks import ClassificationRecipe, InstructionRecipe, make_recipe


def spec(**overrides):
    data = {
        "name": "t", "task": "classification", "seed": 1,
        "labels": {"polite": {"description": "Kind and warm.",
                              "examples": ["Thank you so much for your patience!", "We are glad to help."]},
                   "impolite": {"description": "Rude.", "examples": ["Read the manual yourself."]}},
        "axes": {"category": {"air": 3, "train": 1}, "issue": ["refund", "delay"]},
        "generate": {"few_shot": 1},
    }
    data.update(overrides)
    return parse_recipe(data)


def reply(**fields) -> Completion:
    return Completion(text=json.dumps(fields), model="m")


def test_prompts_are_deterministic_and_seeded() -> None:
    a, b = ClassificationRecipe(spec()), ClassificationRecipe(spec())
    assert a.prompt("polite", 7).messages == b.prompt("polite", 7).messages
    assert a.prompt("polite", 7).seed == b.prompt("polite", 7).seed
    assert a.prompt("polite", 7).messages != a.prompt("polite", 8).messages or a.prompt("polite", 7).seed != a.prompt("polite", 8).seed
    other_seed = ClassificationRecipe(spec(seed=2))
    assert [other_seed.prompt("polite", i).seed for i in range(5)] != [a.prompt("polite", i).seed for i in range(5)]


def test_axis_weights_are_respected() -> None:
    recipe = ClassificationRecipe(spec())
    counts = Counter(recipe.prompt("polite", i).target["axes"]["category"] for i in range(400))
    assert 0.65 < counts["air"] / 400 < 0.85


def test_prompt_names_label_axes_and_examples() -> None:
    prompt = ClassificationRecipe(spec()).prompt("impolite", 0)
    user = prompt.messages[-1]["content"]
    assert '"impolite"' in user and "Kind and warm." in user and "Rude." in user
    assert prompt.target["axes"]["category"] in user
    assert "Read the manual yourself." in user
    assert prompt.schema["properties"]["label"]["enum"] == ["polite", "impolite"]
    assert prompt.messages[0]["role"] == "system" and "fictional" in prompt.messages[0]["content"]


def test_reasoning_adds_rationale_first() -> None:
    recipe = ClassificationRecipe(spec(generate={"reasoning": True}))
    prompt = recipe.prompt("polite", 0)
    assert list(prompt.schema["properties"]) == ["rationale", "label", "text"]
    row = recipe.parse(prompt, reply(rationale="It thanks them.", label="polite", text="Thanks a lot for waiting, we fixed it."), "id1")
    assert isinstance(row, Record) and row.meta["rationale"] == "It thanks them."


def test_good_reply_becomes_a_record_with_meta() -> None:
    recipe = ClassificationRecipe(spec())
    prompt = recipe.prompt("polite", 3)
    row = recipe.parse(prompt, reply(label="polite", text="We're so sorry about the delay; your refund is on its way."), "abc")
    assert isinstance(row, Record)
    assert row.label == "polite" and row.id == "abc"
    assert row.meta["axis_category"] == prompt.target["axes"]["category"]
    assert row.meta["generator"] == prompt.generator and row.meta["model"] == "m"
    # Which few-shot example the row was written after: where the recipe writes it.
    index = recipe.examples["polite"].index(prompt.target["examples"][0])
    assert row.meta["few_shot"] == [f"labels.polite.examples[{index}]"]


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        (Completion(text="I'm sorry, but I can't assist with that."), "refusal"),
        (Completion(text="As an AI language model, I cannot write rude text."), "refusal"),
        (Completion(text=""), "empty"),
        (Completion(text="   \n"), "empty"),
        (Completion(text='{"label": "polite", "text": "cut off'), "bad_json"),
        (Completion(text="Sure! Here is a polite reply: thanks."), "bad_json"),
        (Completion(text='["not", "an", "object"]'), "bad_json"),
        (Completion(text='{"label": "polite"}'), "bad_json"),
        (Completion(text='{"label": "polite", "text": 42}'), "bad_json"),
        (Completion(text='{"label": "polite", "text": ""}'), "empty"),
        (Completion(text='{"label": "sarcastic", "text": "Oh, great, another delay."}'), "unknown_label"),
        (Completion(text='{"label": "impolite", "text": "Whatever, not my problem."}'), "label_mismatch"),
        (Completion(text='{"label": "polite", "text": "Thank you so much for your patience!"}'), "copied_example"),
        (Completion(text='{"label": "polite", "text": "Kind and warm."}'), "repeats_prompt"),
        (Completion(text='{"label": "polite", "text": "Thank', finish_reason="length"), "truncated"),
        (Completion(text="", error="http_500 (gave up after 3 attempts)"), "request_failed"),
        (Completion(text='{"label": "polite", "text": "I\'m sorry, but I cannot help with that request."}'), "refusal"),
    ],
)
def test_bad_replies_become_rejected_rows(completion: Completion, reason: str) -> None:
    recipe = ClassificationRecipe(spec(generate={"few_shot": 2}))
    prompt = recipe.prompt("polite", 0)
    row = recipe.parse(prompt, completion, "rid")
    assert isinstance(row, Rejected), row
    assert row.reason == reason and row.stage == "parse" and row.id == "rid"


def test_json_in_code_fence_is_accepted() -> None:
    recipe = ClassificationRecipe(spec())
    prompt = recipe.prompt("polite", 0)
    text = 'Here you go:\n```json\n{"label": "polite", "text": "Happy to help with your train ticket today."}\n```'
    assert isinstance(recipe.parse(prompt, Completion(text=text), "x"), Record)


def test_instruction_recipe_prompts_and_parses() -> None:
    data = {"name": "i", "task": "instruction", "description": "Write product descriptions.",
            "axes": {"category": ["toys", "audio"]},
            "examples": [{"instruction": "Describe the X1 speaker.", "response": "Loud and clear."}]}
    recipe = make_recipe(parse_recipe(data))
    assert isinstance(recipe, InstructionRecipe)
    prompt = recipe.prompt("all", 0)
    assert "Describe the X1 speaker." in prompt.messages[-1]["content"]
    row = recipe.parse(prompt, reply(instruction="Describe the Z9 robot toy.", response="It walks and talks."), "i1")
    assert isinstance(row, Record) and row.fields["response"] == "It walks and talks." and row.label is None
    assert row.meta["few_shot"] == ["examples[0]"]
    copied = recipe.parse(prompt, reply(instruction="Describe the X1 speaker.", response="Loud."), "i2")
    assert isinstance(copied, Rejected) and copied.reason == "copied_example"
    missing = recipe.parse(prompt, reply(instruction="Describe it."), "i3")
    assert isinstance(missing, Rejected) and missing.reason == "bad_json"


def _article(i: int, words: int) -> str:
    sentence = f"Article {i} reports that the council met again on Tuesday to discuss the budget. "
    return (sentence * (words // len(sentence.split()) + 1)).strip()


def test_real_rows_as_examples_are_bounded_whatever_their_length() -> None:
    """Whole news articles as real rows made 1,500-token prompts: examples stay within example_max_words."""
    real = [Record({"text": _article(i, 600)}, "polite", id=f"p{i}") for i in range(6)]
    real += [Record({"text": _article(i, 900)}, "impolite", id=f"i{i}") for i in range(6)]
    recipe = make_recipe(spec(generate={"few_shot": 3, "example_max_words": 40}), real)
    for index in range(20):
        prompt = recipe.prompt("polite", index)
        assert all(len(example.split()) <= 41 for example in prompt.target["examples"])  # 40 words + "…"
        # A real row cut to the bound still names the row it came from.
        assert {i for i in prompt.target["few_shot"] if i.startswith("p")} and set(prompt.target["few_shot"]) <= {
            *(r.id for r in real), "labels.polite.examples[0]", "labels.polite.examples[1]"}
        assert len(prompt.messages[-1]["content"].split()) < 400


def test_short_real_rows_are_preferred_to_cut_long_ones() -> None:
    short = [Record({"text": f"Short real snippet number {i}, warm and kind."}, "polite", id=f"s{i}") for i in range(3)]
    long = [Record({"text": _article(i, 300)}, "polite", id=f"l{i}") for i in range(3)]
    recipe = make_recipe(spec(generate={"few_shot": 2}), [*long, *short])
    pool = recipe.examples["polite"]
    assert [r.text for r in short] == [t for t in pool if t.startswith("Short")]
    assert not any(t.startswith("Article") for t in pool)
    # Rows within the bound are used unchanged, in their order: prompts for ordinary data do not change.
    assert recipe.examples["impolite"] == ["Read the manual yourself."]
