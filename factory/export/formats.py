"""The fine-tuning layouts: one conversation in, one JSON line out; and OpenAI's rules for its files.

Layouts, as the tools that read them document them:
- messages: {"messages": [{"role", "content"}, ...]}: TRL's conversational format (SFTTrainer applies
  the model's chat template), the Hub's chat datasets, Axolotl's and LLaMA-Factory's OpenAI-style sets.
- openai: the same line, for the OpenAI fine-tuning API, each example checked against its rules (a
  kind may write OpenAI's preference layout instead, checked by the same rules).
- alpaca: {"instruction", "input", "output"} (+ "system", and "history": [[user, assistant], ...] for
  the turns before the last, as LLaMA-Factory reads multi-turn Alpaca).
- sharegpt: {"conversations": [{"from": "system" | "human" | "gpt", "value"}, ...]}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from factory.records import Conversation

OPENAI_ROLES = ("system", "user", "assistant", "tool", "function")
OPENAI_MESSAGE_KEYS = ("role", "content", "name", "function_call", "tool_calls", "tool_call_id", "weight")
OPENAI_MIN_EXAMPLES = 10  # a training file with fewer is refused by the fine-tuning API
# What each shared layout holds, as the dataset card says it (a kind describes the layouts it writes itself).
LAYOUTS = {"columns": "the dataset's own columns", "messages": "a chat `messages` column (TRL's SFTTrainer, the Hub's chat "
           "datasets)", "openai": "OpenAI fine-tuning JSONL, every line checked against its rules",
           "alpaca": "`instruction`/`input`/`output` (+ `history`)", "sharegpt": "`conversations` with `from`/`value`"}


def to_messages(conversation: Conversation, system: str | None) -> dict[str, Any]:
    return {"messages": conversation.messages(system)}


def to_alpaca(conversation: Conversation, system: str | None) -> dict[str, Any]:
    *history, (last_user, output) = conversation.turns
    single = not history
    row: dict[str, Any] = {"instruction": last_user, "input": conversation.input if single else "", "output": output}
    if system:
        row["system"] = system
    if not single:  # the first turn carries the input (a text to classify), as in the chat layouts
        history = [(conversation.user_content(0), history[0][1]), *history[1:]]
        row["history"] = [[user, assistant] for user, assistant in history]
    return row


def to_sharegpt(conversation: Conversation, system: str | None) -> dict[str, Any]:
    speaker = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": speaker[m["role"]], "value": m["content"]} for m in conversation.messages(system)]}


CHAT_LAYOUTS: dict[str, Callable[[Conversation, str | None], dict[str, Any]]] = {
    "messages": to_messages, "openai": to_messages, "alpaca": to_alpaca, "sharegpt": to_sharegpt}


def token_upper_bound(example: dict[str, Any]) -> int:
    """At most how many tokens an OpenAI model counts for `example`: a byte-level BPE token covers at least
    one UTF-8 byte, plus the chat format's few tokens per message (OpenAI's cookbook counts 3, and 3 to
    prime the reply). Exact counts need tiktoken and its downloaded encodings; a bound needs neither."""
    messages = example.get("messages") or []
    return 3 + sum(4 + len(str(m.get("content") or "").encode("utf-8")) + len(str(m.get("name") or "").encode())
                   for m in messages if isinstance(m, dict))


def _message_problems(messages: Any) -> list[str]:
    """OpenAI's rules for one list of chat messages."""
    if not isinstance(messages, list) or not messages:
        return ["missing_messages_list"]
    problems = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            problems.append("message_missing_key")
            continue
        if any(key not in OPENAI_MESSAGE_KEYS for key in message):
            problems.append("message_unrecognized_key")
        if message["role"] not in OPENAI_ROLES:
            problems.append("unrecognized_role")
        content = message["content"]
        if (not isinstance(content, str) or not content.strip()) and not message.get("function_call") and not message.get("tool_calls"):
            problems.append("missing_content")
    return problems


def openai_problems(example: Any, max_tokens: int) -> list[str]:
    """What OpenAI's fine-tuning format rules find wrong with one example ([] when it is valid).

    The rules of OpenAI's data preparation guide: a `messages` list; each message a mapping with a
    known role and only known keys; content a non-empty string; at least one assistant message; the
    example within the model's token limit. A preference example (OpenAI's DPO layout: `input.messages`,
    `preferred_output` and `non_preferred_output`, each output one assistant message) is checked the same
    way, part by part."""
    if isinstance(example, dict) and "input" in example:
        inputs = example["input"].get("messages") if isinstance(example["input"], dict) else None
        problems = _message_problems(inputs)
        for side in ("preferred_output", "non_preferred_output"):
            output = example.get(side)
            if not isinstance(output, list) or len(output) != 1 or not isinstance(output[0], dict) \
                    or output[0].get("role") != "assistant":
                problems.append(f"{side}_not_one_assistant_message")
            else:
                problems += _message_problems(output)
        whole = {"messages": [*(inputs or []), *(example.get("preferred_output") or []), *(example.get("non_preferred_output") or [])]}
        if token_upper_bound(whole) > max_tokens:
            problems.append("may_exceed_token_limit")
        return sorted(set(problems))
    if not isinstance(example, dict):
        return ["missing_messages_list"]
    problems = _message_problems(example.get("messages"))
    if problems == ["missing_messages_list"]:
        return problems
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in example["messages"]):
        problems.append("example_missing_assistant_message")
    if token_upper_bound(example) > max_tokens:
        problems.append("may_exceed_token_limit")
    return sorted(set(problems))


def dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)
