"""Rows carry the fields their kind declares; generated.jsonl written before that still loads."""

from __future__ import annotations

from factory.records import Record


def test_a_row_round_trips_with_its_fields() -> None:
    row = Record({"instruction": "Name a colour.", "response": "Teal."}, id="r1", meta={"generator": "g"})
    again = Record.from_json(row.to_json())
    assert again == row and again.text == "Name a colour." and again.texts() == ["Name a colour.", "Teal."]
    assert "response" not in row.to_json() and row.to_json()["fields"]["response"] == "Teal."


def test_rows_from_before_fields_load() -> None:
    classified = Record.from_json({"text": "Great.", "label": "fresh", "response": None, "id": "a", "meta": {}})
    assert classified == Record({"text": "Great."}, "fresh", id="a")
    pair = Record.from_json({"text": "Name a colour.", "label": None, "response": "Teal.", "id": "b", "meta": {"x": 1}})
    assert pair.fields == {"instruction": "Name a colour.", "response": "Teal."} and pair.meta == {"x": 1}
