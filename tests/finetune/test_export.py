"""Fine-tuning exports: every layout loads with `datasets`, the chat layouts go through TRL's chat-template
formatting with the packaged SmolLM2 tokenizer, and OpenAI's format rules hold for every line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import classification_recipe, write_recipe

from factory.cli import main
from factory.export.formats import openai_problems
from factory.recipe_file import parse_recipe
from factory.records import Conversation
from factory.run.manifest import load_manifest

SYSTEM = "You are a concise shop assistant."
ALL_FORMATS = ["columns", "messages", "openai", "alpaca", "sharegpt"]


def instruction_recipe(base_url: str, **overrides: Any) -> dict[str, Any]:
    base = classification_recipe(base_url)
    return {"name": "pairs", "task": "instruction", "seed": 4, "description": "Product descriptions.",
            "examples": [{"instruction": "Describe the X1 speaker.", "response": "Loud and clear."}],
            "generate": {"count": 14}, "generators": base["generators"],
            "splits": {"validation": 2, "test": 2},
            "export": {"formats": ALL_FORMATS, "system_prompt": SYSTEM}, **overrides}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_instruction_run_exports_every_layout_per_split_and_each_loads(loopback, tmp_path, canary_key, smollm2_tokenizer) -> None:
    from datasets import load_dataset
    from trl.data_utils import apply_chat_template, is_conversational

    server = loopback()
    run = tmp_path / "run"
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", instruction_recipe(server.base_url))),
                 "--out", str(run), "--no-progress"]) == 0
    exports = load_manifest(run).exports["formats"]
    assert set(exports) == set(ALL_FORMATS)
    for fmt in ALL_FORMATS:
        assert exports[fmt]["rows"] == {"train": 10, "validation": 2, "test": 2}, fmt
        files = {split: str(run / path) for split, path in exports[fmt]["files"].items()}
        loaded = load_dataset("json", data_files=files)
        assert {name: len(split) for name, split in loaded.items()} == {"train": 10, "validation": 2, "test": 2}

    train = lines(run / "export" / "messages" / "train.jsonl")
    assert train[0]["messages"][0] == {"role": "system", "content": SYSTEM}
    assert [m["role"] for m in train[0]["messages"]] == ["system", "user", "assistant"]
    # TRL's SFTTrainer formatting, on the file as `datasets` loads it, with a real chat template.
    loaded = load_dataset("json", data_files=str(run / "export" / "messages" / "train.jsonl"), split="train")
    assert is_conversational(loaded[0])
    text = apply_chat_template(loaded[0], smollm2_tokenizer)["text"]
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{train[0]['messages'][1]['content']}")
    assert text.endswith(f"{train[0]['messages'][2]['content']}<|im_end|>\n")

    for example in lines(run / "export" / "openai" / "train.jsonl"):
        assert openai_problems(example, 65536) == []
    alpaca = lines(run / "export" / "alpaca" / "train.jsonl")
    assert alpaca[0] == {"instruction": train[0]["messages"][1]["content"], "input": "",
                         "output": train[0]["messages"][2]["content"], "system": SYSTEM}
    sharegpt = lines(run / "export" / "sharegpt" / "train.jsonl")
    assert [t["from"] for t in sharegpt[0]["conversations"]] == ["system", "human", "gpt"]
    assert set(lines(run / "export" / "columns" / "train.jsonl")[0]) == {"instruction", "response"}
    assert "## Fine-tuning files" in (run / "README.md").read_text()


def test_a_classification_run_exports_text_and_label_and_chat_for_a_classifier(loopback, tmp_path, canary_key) -> None:
    server = loopback()
    recipe = classification_recipe(server.base_url, export={"formats": ["columns", "messages", "alpaca"]})
    run = tmp_path / "run"
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(run), "--no-progress"]) == 0
    columns = lines(run / "export" / "columns" / "train.jsonl")
    assert len(columns) == 10 and set(columns[0]) == {"text", "label"}
    chat = lines(run / "export" / "messages" / "train.jsonl")[0]["messages"]
    assert chat[0] == {"role": "user", "content": "Classify the text. Answer with one label: positive, negative.\n\n"
                                                  + columns[0]["text"]}
    assert chat[1] == {"role": "assistant", "content": columns[0]["label"]}
    alpaca = lines(run / "export" / "alpaca" / "train.jsonl")[0]
    assert alpaca == {"instruction": "Classify the text. Answer with one label: positive, negative.",
                      "input": columns[0]["text"], "output": columns[0]["label"]}


def test_factory_export_writes_a_finished_run_in_another_layout_and_reports_openai_problems(loopback, tmp_path, canary_key, capsys) -> None:
    server = loopback()
    recipe = instruction_recipe(server.base_url, generate={"count": 6}, splits=None, export=None)
    recipe = {k: v for k, v in recipe.items() if v is not None}
    run = tmp_path / "run"
    assert main(["build", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(run), "--no-progress"]) == 0
    assert not (run / "export").exists()
    # Six pairs are too few for OpenAI: the file is written, the problem is said, the exit code is non-zero.
    assert main(["export", str(run), "--format", "sharegpt,openai", "--system-prompt", SYSTEM]) == 1
    out = capsys.readouterr()
    assert "export/sharegpt/train.jsonl: 6 rows" in out.out
    assert "OpenAI fine-tuning needs at least 10 training examples" in out.err
    assert len(lines(run / "export" / "openai" / "train.jsonl")) == 6
    exports = load_manifest(run).exports
    assert exports["system_prompt"] == SYSTEM and set(exports["formats"]) == {"sharegpt", "openai"}
    assert main(["export", str(run), "--format", "alpaca,nonsense"]) == 1
    assert ("a 'instruction' dataset cannot be exported as nonsense; it exports as: columns, messages, openai, alpaca, "
            "sharegpt") in capsys.readouterr().err


def test_openai_rules_catch_each_problem() -> None:
    good = {"messages": Conversation([("Hi", "Hello")]).messages("Be brief.")}
    answer = {"role": "assistant", "content": "x"}
    assert openai_problems(good, 100) == []
    assert openai_problems({"prompt": "x"}, 100) == ["missing_messages_list"]
    assert openai_problems({"messages": [{"role": "user", "content": "Hi"}]}, 100) == ["example_missing_assistant_message"]
    assert openai_problems({"messages": [{"role": "robot", "content": "Hi"}, answer]}, 100) == ["unrecognized_role"]
    assert openai_problems({"messages": [{"role": "user", "content": " "}, answer]}, 100) == ["missing_content"]
    assert openai_problems({"messages": [{"role": "user"}, answer]}, 100) == ["message_missing_key"]
    assert openai_problems({"messages": [{"role": "user", "content": "Hi", "mood": "x"}, answer]}, 100) == ["message_unrecognized_key"]
    assert openai_problems({"messages": Conversation([("Hi " * 200, "Hello")]).messages()}, 256) == ["may_exceed_token_limit"]


def test_a_table_recipe_cannot_ask_for_chat_layouts() -> None:
    table = {"name": "t", "task": "table", "columns": {"a": {"type": "int"}}}
    with pytest.raises(Exception, match="cannot be written as messages; it exports as: columns"):
        parse_recipe({**table, "export": {"formats": ["columns", "messages"]}})
    assert parse_recipe({**table, "export": {"formats": ["columns"]}}).export.formats == ["columns"]


def test_openai_rules_check_the_preference_layout() -> None:
    good = {"input": {"messages": [{"role": "user", "content": "Name a prime."}]},
            "preferred_output": [{"role": "assistant", "content": "7"}],
            "non_preferred_output": [{"role": "assistant", "content": "8"}]}
    assert openai_problems(good, 65536) == []
    assert openai_problems({**good, "input": {"messages": []}}, 65536) == ["missing_messages_list"]
    assert openai_problems({**good, "preferred_output": [{"role": "user", "content": "7"}]}, 65536) == \
        ["preferred_output_not_one_assistant_message"]
    assert openai_problems({**good, "non_preferred_output": [{"role": "assistant", "content": " "}]}, 65536) == ["missing_content"]
    assert openai_problems(good, 10) == ["may_exceed_token_limit"]
