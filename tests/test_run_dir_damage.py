"""A run directory after a crash: torn last lines and damaged caches never break a later command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import classification_recipe, real_rows, scripted, write_recipe
from loopback_openai import LoopbackOpenAI

from factory.cli import main
from factory.run.store import TORN_LINES, read_jsonl

FRAGMENT = '{"id": "torn-by-a-crash", "text": "half a ro'


def _recipe(tmp_path: Path, server: LoopbackOpenAI) -> Path:
    data = classification_recipe(server.base_url, generate={"per_label": 8})
    data["real_data"] = {"path": real_rows(tmp_path), "train_per_label": 4}
    data["filters"] = [{"type": "exact_dedup"}, {"type": "quality", "min_words": 3}]
    data["eval"] = {"evaluators": ["linear"], "seeds": [0], "bootstrap": 100}
    return write_recipe(tmp_path / "r.yaml", data)


@pytest.fixture()
def built(tmp_path: Path, loopback, canary_key: str) -> tuple[Path, Path, LoopbackOpenAI]:
    server = loopback(script=scripted)
    path = _recipe(tmp_path, server)
    out = tmp_path / "run"
    assert main(["build", str(path), "--out", str(out), "--no-progress"]) == 0
    return path, out, server


def _strict_rows(path: Path) -> list[dict]:
    """Every line must parse: what a strict reader (pandas, jq, the old card) would demand."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name", ["generated.jsonl", "rejected.jsonl"])
def test_a_torn_last_line_is_set_aside_and_every_command_goes_on(built, name: str, caplog) -> None:
    recipe, out, server = built
    before = _strict_rows(out / name)
    assert before, f"the build wrote no {name}: the test would prove nothing"
    with (out / name).open("a", encoding="utf-8") as handle:
        handle.write(FRAGMENT)  # what a kill -9 in the middle of a write leaves

    # `factory eval` (which rewrites the card and the report) goes on; the fragment is set aside
    # before anything is appended, so the next build's rows are not glued to it.
    (out / "README.md").unlink()
    assert main(["eval", str(out)]) in (0, 4)
    assert (out / "README.md").is_file() and (out / "report.html").is_file()
    # generated.jsonl is appended to, so its torn tail is set aside; rejected.jsonl is written whole at the
    # end of each build, so readers skip the torn line and the next build writes the file anew.
    said = "torn line" if name == "generated.jsonl" else "unreadable line"
    assert any(said in r.getMessage() for r in caplog.records)

    sent = len(server.log)
    assert main(["build", str(recipe), "--out", str(out), "--no-progress"]) == 0
    assert len(server.log) == sent
    rows = _strict_rows(out / name)
    assert [r["id"] for r in rows] == [r["id"] for r in before]
    aside = read_jsonl(out / TORN_LINES)
    assert [(a["file"], a["fragment"]) for a in aside] == ([(name, FRAGMENT)] if name == "generated.jsonl" else [])

    # A build that adds rows appends them on lines of their own.
    generated = len(_strict_rows(out / "generated.jsonl"))
    assert main(["build", str(recipe), "--out", str(out), "--no-progress", "--per-label", "10"]) == 0
    assert len(_strict_rows(out / "generated.jsonl")) > generated
    table = pd.read_parquet(out / "dataset" / "data" / "train.parquet")
    assert len(table) == 20


def test_a_row_glued_to_a_fragment_by_an_old_version_is_skipped_by_every_reader(built) -> None:
    recipe, out, _ = built
    path = out / "generated.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    # The old bug: a fragment, then the next row glued to it, then more rows.
    path.write_text("".join(lines[:-1]) + FRAGMENT + lines[-1], encoding="utf-8")
    assert main(["eval", str(out)]) in (0, 4)
    assert main(["build", str(recipe), "--out", str(out), "--no-progress"]) == 0
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("damage", ["not_a_database", "truncated"])
def test_a_damaged_request_cache_names_the_file_and_what_to_do(built, damage: str, capsys) -> None:
    recipe, out, _ = built
    cache = out / "requests.sqlite"
    for extra in (out / "requests.sqlite-wal", out / "requests.sqlite-shm"):
        extra.unlink(missing_ok=True)
    data = cache.read_bytes()
    assert len(data) > 8192
    if damage == "not_a_database":
        cache.write_bytes(b"\0" * 4096 + data[4096:])  # the header overwritten
    else:
        cache.write_bytes(data[:4096] + b"\xff" * 4096)  # a disk that filled up mid-write
    generated = (out / "generated.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["build", str(recipe), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert str(cache) in err and "move it aside" in err and "generated.jsonl are kept" in err
    assert "Traceback" not in err
    assert (out / "generated.jsonl").read_bytes() == generated

    # Doing what the message says works: the build runs again.
    shutil.move(cache, out / "requests.sqlite.damaged")
    assert main(["build", str(recipe), "--out", str(out), "--no-progress"]) == 0


def test_a_damaged_embedding_cache_names_the_file(built, capsys) -> None:
    recipe, out, _ = built
    cache = out / "embeddings.sqlite"
    assert cache.is_file()
    cache.write_bytes(b"this is not sqlite" * 512)
    capsys.readouterr()
    assert main(["eval", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(cache) in err and "only caches embeddings" in err
