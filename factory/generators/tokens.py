"""Counting a prompt's tokens before it is sent: exactly with the model's tokenizer, else a bound.

An estimate needs the count a server will bill; a budget needs a count that is never too low. With
a tokenizer (a Hugging Face folder or Hub id, or a packaged GGUF model's name) the prompt is run
through the model's chat template, as a server that serves that model does (a tokenizer without a
template, such as a port of OpenAI's, counts each message plus OpenAI's allowance). Without one, the
estimate uses OpenAI's rule of thumb (4 characters a token) and the budget reserves the prompt's
UTF-8 bytes, which no byte-level tokenizer can exceed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

from factory.errors import GenerationError
from factory.records import Message

# Tokens a chat format adds per message (role markers, separators) and per reply's opening, as OpenAI
# documents for its models (3 and 3): an allowance added to the bounds, never to a tokenizer's count.
PER_MESSAGE, PER_REPLY = 4, 3
CHARS_PER_TOKEN = 4


class PromptCounter:
    """Counts the prompt tokens of chat messages for one generator; `method` says how, for the estimate."""

    def __init__(self, tokenizer: str | None = None) -> None:
        self.tokenizer = tokenizer

    def check(self) -> None:
        """Load the tokenizer now: a bad name fails before any request, with GenerationError."""
        if self.tokenizer:
            _load(self.tokenizer)

    @property
    def method(self) -> str:
        """How `count` counts, for the estimate to say."""
        if not self.tokenizer:
            return (f"an approximation: {CHARS_PER_TOKEN} characters a token plus {PER_MESSAGE} a message "
                    "(set the generator's `tokenizer:` for an exact count)")
        if _load(self.tokenizer).chat_template:
            return f"the tokenizer of {self.tokenizer} with its chat template (exact)"
        return f"the tokenizer of {self.tokenizer}, plus {PER_MESSAGE} tokens a message (it has no chat template)"

    def count(self, messages: Sequence[Message]) -> int:
        """The tokens a server would bill: exact with a tokenizer, else approximate."""
        if self.tokenizer:
            return _templated_length(self.tokenizer, _key(messages))
        chars = sum(len(m.get("content") or "") for m in messages)
        return math.ceil(chars / CHARS_PER_TOKEN) + PER_MESSAGE * len(messages) + PER_REPLY

    def count_text(self, text: str) -> int:
        """Tokens of a bare text (a reply): the tokenizer's count, else the approximation."""
        if self.tokenizer:
            return len(_load(self.tokenizer)(text, add_special_tokens=False)["input_ids"])
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def upper_bound(self, messages: Sequence[Message]) -> int:
        """A count never below what the server bills: exact with a tokenizer, else the UTF-8 bytes."""
        if self.tokenizer:
            return self.count(messages)
        size = sum(len((m.get("content") or "").encode()) + len(m.get("role", "").encode()) for m in messages)
        return size + PER_MESSAGE * len(messages) + PER_REPLY


def _key(messages: Sequence[Message]) -> tuple[tuple[str, str], ...]:
    return tuple((m.get("role", ""), m.get("content") or "") for m in messages)


@cache
def _load(name: str) -> Any:
    import transformers

    from factory.generators.catalog import CATALOG, resolve

    try:
        if name in CATALOG:  # a packaged GGUF: its tokenizer and chat template come from the file
            path = resolve(name).path
            return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return transformers.AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:  # not a folder, not on the Hub, or the Hub out of reach
        raise GenerationError(f"tokenizer {name!r} cannot be loaded ({str(exc).splitlines()[0][:200]}); name a local "
                              "Hugging Face tokenizer folder, a Hub id, or a packaged model (`factory models`)") from None


def _templated_length(name: str, messages: tuple[tuple[str, str], ...]) -> int:
    tokenizer = _load(name)
    if not tokenizer.chat_template:  # e.g. a GPT-4o tokenizer port: OpenAI's documented per-message allowance
        return sum(len(tokenizer(content, add_special_tokens=False)["input_ids"]) + PER_MESSAGE
                   for _, content in messages) + PER_REPLY
    chat = [{"role": role, "content": content} for role, content in messages]
    ids = tokenizer.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # newer transformers return a BatchEncoding
        ids = ids["input_ids"]
    return len(ids)
