"""Multi-turn instruction recipes: conversations written turn by turn through the request cache, exported in
every chat layout, resumed without re-sending a finished turn."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from conftest import cached_requests, classification_recipe, resent, write_recipe
from loopback_openai import Action, default_text

from factory.cli import main
from factory.run.manifest import load_manifest

CONVERSATION = re.compile(r"<conversation>\n(.*?)\n</conversation>", re.DOTALL)


def follow_up_text(body: dict) -> str:
    """A next turn that names how many turns came before it (so the test sees what the prompt showed)."""
    shown = CONVERSATION.search(body["messages"][-1]["content"]).group(1)
    earlier = shown.count("\nUser: ") + 1
    return json.dumps({"user": f"And what about turn {earlier + 1}, case {body['seed']}?",
                       "assistant": f"Turn {earlier + 1} answer for case {body['seed']}."})


def chatty(body: dict, n: int) -> Action:
    if "<conversation>" in body["messages"][-1]["content"]:
        return Action(text=follow_up_text(body))
    return Action(text=default_text(body))


def recipe(base_url: str, **overrides: Any) -> dict[str, Any]:
    base = classification_recipe(base_url)
    return {"name": "chats", "task": "instruction", "seed": 4, "description": "Product questions.", "turns": 3,
            "examples": [{"instruction": "Describe the X1 speaker.", "response": "Loud and clear."}],
            "generate": {"count": 4}, "generators": base["generators"],
            "export": {"formats": ["messages", "openai", "alpaca", "sharegpt"], "system_prompt": "Be kind."}, **overrides}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_conversations_are_written_turn_by_turn_and_exported_in_every_chat_layout(loopback, tmp_path, canary_key) -> None:
    server = loopback(script=chatty)
    run = tmp_path / "run"
    path = write_recipe(tmp_path / "r.yaml", recipe(server.base_url))
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0

    conversations = [r for r in server.log if "<conversation>" not in r.body["messages"][-1]["content"]]
    follow_ups = [r for r in server.log if "<conversation>" in r.body["messages"][-1]["content"]]
    assert len(follow_ups) == 2 * len(conversations), "two further turns per conversation, one request each"
    # The third turn's prompt shows the second turn's reply: the conversation so far.
    third = [r for r in follow_ups if "turn 2" in r.body["messages"][-1]["content"]]
    assert len(third) == len(conversations)

    messages = lines(run / "export" / "messages" / "train.jsonl")
    assert len(messages) == 4
    chat = messages[0]["messages"]
    assert [m["role"] for m in chat] == ["system"] + ["user", "assistant"] * 3
    assert chat[3]["content"].startswith("And what about turn 2") and chat[6]["content"].startswith("Turn 3 answer")
    alpaca = lines(run / "export" / "alpaca" / "train.jsonl")[0]
    assert alpaca["instruction"] == chat[5]["content"] and alpaca["output"] == chat[6]["content"]
    assert alpaca["history"] == [[chat[1]["content"], chat[2]["content"]], [chat[3]["content"], chat[4]["content"]]]
    sharegpt = lines(run / "export" / "sharegpt" / "train.jsonl")[0]["conversations"]
    assert [t["from"] for t in sharegpt] == ["system"] + ["human", "gpt"] * 3
    assert load_manifest(run).exports["formats"]["openai"]["rows"] == {"train": 4}

    import pandas as pd
    table = pd.read_parquet(run / "dataset" / "data" / "train.parquet")
    assert list(table["instruction"]) == [m["messages"][1]["content"] for m in messages]
    assert all(len(turns) == 6 for turns in table["messages"])


def test_a_failed_turn_is_retried_on_the_next_run_and_no_finished_turn_is_sent_again(loopback, tmp_path, canary_key) -> None:
    failing = {"on": True}

    def flaky(body: dict, n: int) -> Action:
        if failing["on"] and "<conversation>" in body["messages"][-1]["content"] and "turn 2" in body["messages"][-1]["content"]:
            return Action(status=500)  # every third turn fails (past the client's retries) on the first run
        return chatty(body, n)

    server = loopback(script=flaky)
    run = tmp_path / "run"
    path = write_recipe(tmp_path / "r.yaml", recipe(server.base_url, generate={"count": 3, "max_requests": 3}))
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 3, "no conversation finished"
    rejected = [json.loads(line) for line in (run / "rejected.jsonl").read_text().splitlines()]
    assert {r["reason"] for r in rejected} == {"request_failed"}
    finished, sent = cached_requests(run), len(server.log)
    assert len(finished) == 6, "three first turns and three second turns are cached"

    failing["on"] = False
    assert main(["build", str(path), "--out", str(run), "--no-progress"]) == 0
    assert resent(server, sent, finished) == [], "no finished turn is sent again"
    assert len(server.log) - sent == 3, "only the three failed third turns"
    assert load_manifest(run).rows == 3
