"""faithfulness: drop grounded rows that their passage does not support (reason `unsupported`).

A small model asked for a question and its answer from a passage often answers from what it
believes instead of what the passage says. A judge prompt (through any generator of the recipe)
sees the passage and the row, and says whether every fact of the row's last text field (an answer)
is stated in the passage or follows from it; the fields before it (the question) are its context.
Rows without a passage (an ungrounded recipe) pass untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from factory.filters.base import Filter, FilterResult
from factory.filters.params import FaithfulnessParams
from factory.records import Prompt, Record, Rejected
from factory.text import extract_json

SYSTEM = ("You check a text against a source passage. The text is supported when every fact in it is stated in the "
          "passage or follows directly from it, in any wording; it is unsupported when it adds a fact the passage does "
          "not give or contradicts it. Reply with one JSON object.")
USER = """Passage:
<passage>
{passage}
</passage>
{context}
Text to check:
<text>
{text}
</text>

Is every fact in the text to check stated in the passage or does it follow from it?
Reply with JSON: {{"supported": true or false, "reason": "<one short sentence>"}}"""

SCHEMA = {"type": "object", "properties": {"supported": {"type": "boolean"}, "reason": {"type": "string"}},
          "required": ["supported", "reason"]}


class Faithfulness(Filter):
    """Drops a grounded row when the judge says its passage does not support it."""

    type = "faithfulness"
    Params = FaithfulnessParams
    params: FaithfulnessParams

    def request(self, record: Record) -> Prompt | None:
        passage = self.context.passages.get(record.meta.get("passage_id", ""))
        if not passage:
            return None
        generator = self.params.generator or (self.context.generators[0] if self.context.generators else "")
        # The row's last text field is judged (an instruction pair's response, a classification row's
        # text); the fields before it are its context (the question it answers).
        texts = [(name, value) for name, value in record.fields.items() if isinstance(value, str)]
        *context, (_, judged) = texts
        shown = "".join(f"\n{name.capitalize()}: {value}" for name, value in context)
        user = USER.format(passage=passage, context=shown, text=judged)
        return Prompt(bucket="judge", index=0, generator=generator, seed=0, schema=SCHEMA,
                      messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])

    def apply(self, records: Sequence[Record]) -> FilterResult:
        kept: list[Record] = []
        dropped: list[Rejected] = []
        counts = {"supported": 0, "unsupported": 0, "not_grounded": 0, "judge_failed": 0}
        for record in records:
            prompt = self.request(record)
            if prompt is None:
                counts["not_grounded"] += 1
                kept.append(record)
                continue
            completion = self.context.answer(prompt) if self.context.answer else None
            verdict = extract_json(completion.text) if completion is not None and completion.error is None else None
            supported = verdict.get("supported") if verdict else None
            if isinstance(supported, str):
                supported = {"true": True, "false": False}.get(supported.strip().lower())
            if not isinstance(supported, bool):
                counts["judge_failed"] += 1
                why = completion.error if completion is not None and completion.error else (
                    "no reply" if completion is None else f"unreadable verdict: {json.dumps(completion.text[:120])}")
                if self.params.on_error == "keep":
                    kept.append(record)
                else:
                    dropped.append(Rejected.from_record(record, self.type, "judge_failed", why))
                continue
            reason = str(verdict.get("reason", ""))[:300] if verdict else ""
            if supported:
                counts["supported"] += 1
                kept.append(Record(dict(record.fields), record.label, record.id, {**record.meta, "judge_reason": reason}))
            else:
                counts["unsupported"] += 1
                dropped.append(Rejected.from_record(record, self.type, "unsupported", reason))
        return FilterResult(kept, dropped, {"judged": counts})
