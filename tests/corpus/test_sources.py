"""Reading `sources:`: every format, cleaning, chunking, stable ids, the cache, and reported problems."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pandas as pd
import pytest

from factory.corpus import load_corpus
from factory.corpus.chunking import chunk, clean, count_tokens
from factory.corpus.overlap import overlapping
from factory.errors import DataError
from factory.recipe_file import parse_recipe
from factory.records import Record


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose page shows `text` (Helvetica), with a correct cross-reference table."""
    stream = zlib.compress(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def recipe(tmp_path: Path, sources: list[dict], **grounding) -> object:
    spec = parse_recipe({
        "name": "docs", "task": "classification",
        "labels": {"a": {"description": "first"}, "b": {"description": "second"}},
        "generators": [{"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}],
        "sources": sources, **({"grounding": grounding} if grounding else {}),
    })
    spec._base_dir = tmp_path
    return spec


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "kettles.txt").write_text("The copper kettle whistles at dawn. It boils water in three minutes.\n\nIts handle stays cool.")
    (folder / "guide.md").write_text(
        "# Lamp guide\n\nThe **brass lamp** has a [dimmer](http://x.example) switch.\n\n- It uses LED bulbs.\n")
    (folder / "sub" / "page.html").write_text(
        "<html><head><style>p{color:red}</style><script>var secret=1;</script></head>"
        "<body><h1>Chairs</h1><p>The oak chair seats four &amp; folds flat.</p></body></html>")
    pd.DataFrame({"body": ["Row one talks about fans and their blades.", "", "Row three is about heaters that hum."]}).to_csv(
        folder / "table.csv", index=False)
    (folder / "notes.jsonl").write_text(json.dumps({"body": "A desk with two drawers and a walnut top."}) + "\n")
    pd.DataFrame({"body": ["Parquet rows describe toasters with four slots."]}).to_parquet(folder / "rows.parquet")
    (folder / "manual.pdf").write_bytes(minimal_pdf("The blender has five speeds and a glass jug."))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (folder / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (folder / "empty.txt").write_text("   \n")
    return folder


def test_every_format_is_read_cleaned_and_problems_are_named(tmp_path: Path, docs: Path) -> None:
    spec = recipe(tmp_path, [{"path": "docs", "text_column": "body"}])
    corpus = load_corpus(spec, tmp_path / "run" / "corpus")
    texts = " ".join(p.text for p in corpus.passages)
    for fact in ("copper kettle", "brass lamp has a dimmer switch", "oak chair seats four & folds flat", "fans and their blades",
                 "walnut top", "toasters with four slots", "blender has five speeds"):
        assert fact in texts, fact
    assert "var secret" not in texts and "color:red" not in texts and "http://x.example" not in texts and "**" not in texts
    problems = {p["name"]: p["reason"] for p in corpus.sources[0].problems}
    assert problems["broken.pdf"].startswith("unreadable")
    assert "latin1.txt" not in problems  # decoded by charset-normalizer (then too short for a passage: counted so)
    assert problems["empty.txt"] == "empty"
    assert problems["table.csv#1"] == "empty"
    documents = {p.document for p in corpus.passages}
    assert {"kettles.txt", "guide.md", "sub/page.html", "table.csv#0", "notes.jsonl#0", "rows.parquet#0", "manual.pdf"} <= documents
    assert not any(str(tmp_path) in d for d in documents), "names are relative to the source, not the user's folders"


def test_a_source_matching_nothing_or_only_unusable_files_is_an_error(tmp_path: Path, docs: Path) -> None:
    with pytest.raises(DataError, match="matches no file"):
        load_corpus(recipe(tmp_path, [{"path": "nowhere/*.txt"}]), tmp_path / "c1")
    with pytest.raises(DataError, match=r"no usable passage.*empty\.txt \(empty\)"):
        load_corpus(recipe(tmp_path, [{"path": "docs/empty.txt"}]), tmp_path / "c2")


def test_ids_are_stable_and_the_cache_is_reused_until_a_file_changes(tmp_path: Path, docs: Path) -> None:
    spec = recipe(tmp_path, [{"path": "docs/*.txt"}])
    first = load_corpus(spec, tmp_path / "c")
    assert (tmp_path / "c" / "passages.jsonl").exists()
    (docs / "kettles.txt").rename(docs / "renamed.txt")  # a move changes no id
    again = load_corpus(spec, tmp_path / "c")
    assert [p.id for p in again.passages] == [p.id for p in first.passages]
    assert {p.document for p in again.passages} == {"renamed.txt"}
    (docs / "renamed.txt").write_text("A new text about a steel kettle with a long spout.")
    changed = load_corpus(spec, tmp_path / "c")
    assert "steel kettle" in changed.passages[0].text and changed.passages[0].id != first.passages[0].id


def test_duplicate_documents_and_passages_are_dropped_and_counted(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for name in ("one.txt", "two.txt"):
        (tmp_path / "d" / name).write_text("The same document, word for word, in two files.")
    corpus = load_corpus(recipe(tmp_path, [{"path": "d"}]), tmp_path / "c")
    assert len(corpus.passages) == 1 and corpus.sources[0].duplicates == 1 and corpus.sources[0].documents == 2


def test_chunks_respect_size_overlap_and_sentence_ends() -> None:
    text = clean(" ".join(f"Sentence number {k} says something about item {k}." for k in range(60)))
    pieces = chunk(text, 40, 10)
    assert len(pieces) > 5
    assert all(count_tokens(p) <= 40 for p in pieces)
    assert all(p.endswith(".") for p in pieces), "passages end at sentence ends"
    for before, after in zip(pieces, pieces[1:]):
        assert after.split(". ")[0] in before, "each passage repeats the last sentence of the one before"
    long_sentence = "word " * 100
    assert all(count_tokens(p) <= 30 for p in chunk(long_sentence, 30, 5))


def test_chunking_overlap_must_be_under_half_the_size() -> None:
    with pytest.raises(Exception, match="overlap"):
        parse_recipe({"name": "x", "task": "classification", "labels": {"a": {"description": "a"}, "b": {"description": "b"}},
                      "sources": [{"path": "d"}], "grounding": {"chunking": {"size": 40, "overlap": 30}}})


def test_validation_rows_in_the_corpus_stop_the_build_or_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    held_out = "This validation review must never be shown to the model in any prompt at all."
    (tmp_path / "d" / "a.txt").write_text(f"Some other text comes first. {held_out} More text follows it here.")
    (tmp_path / "d" / "b.txt").write_text("An unrelated document about gardening and tomatoes in the spring.")
    validation = [Record({"text": held_out}, label="a", id="real-1")]
    with pytest.raises(DataError, match=r"sources\[0\].*1 passage\(s\) contain a real validation row.*exclude_real_validation"):
        load_corpus(recipe(tmp_path, [{"path": "d"}]), tmp_path / "c", validation)
    corpus = load_corpus(recipe(tmp_path, [{"path": "d", "exclude_real_validation": True}]), tmp_path / "c", validation)
    assert [p.document for p in corpus.passages] == ["b.txt"]
    assert corpus.sources[0].validation_overlap == 1


def test_overlap_rules() -> None:
    passages = ["the film is a great ride from start to end, I loved it", "Wrong.", "short words here"]
    assert overlapping(passages, ["I loved it", "wrong", "great ride from start to end"]) == {0, 1}
    assert overlapping(passages, ["no match at all in these"]) == set()


@pytest.mark.parametrize("data, message", [
    ({"grounding": {"mode": "summarise"}, "sources": [{"path": "d"}]},
     "grounding.mode: 'summarise' is not a mode of the 'classification' task; known: topic, rewrite"),
    ({"grounding": {"mode": "rewrite"}}, "grounding.mode needs documents: add `sources:`"),
    ({"sources": [{"path": "d", "colour": "red"}]}, "sources[0].colour: unknown key"),
])
def test_grounding_errors_name_the_field(data: dict, message: str) -> None:
    from factory.errors import RecipeError

    with pytest.raises(RecipeError) as error:
        parse_recipe({"name": "x", "task": "classification",
                      "labels": {"a": {"description": "a"}, "b": {"description": "b"}}, **data})
    assert message in str(error.value)


def test_an_instruction_recipe_needs_seed_tasks_or_sources() -> None:
    from factory.errors import RecipeError

    with pytest.raises(RecipeError, match="at least one seed task is needed"):
        parse_recipe({"name": "x", "task": "instruction"})
    spec = parse_recipe({"name": "x", "task": "instruction", "sources": [{"path": "docs"}]})
    assert spec.grounding.mode == "qa" and spec.grounded


def test_validation_rows_bounds_the_held_out_set_and_leaves_training_rows_alone() -> None:
    from factory.data.real import split_real

    rows = [Record({"text": f"row {k}"}, label="ab"[k % 2], id=f"r{k:03d}") for k in range(200)]
    whole = split_real(rows, 8, seed=1)
    bounded = split_real(rows, 8, seed=1, validation_rows=50)
    assert [r.id for r in bounded.train] == [r.id for r in whole.train]
    assert len(bounded.validation) == 50 and {r.id for r in bounded.validation} < {r.id for r in whole.validation}
    assert bounded.validation == split_real(rows, 8, seed=1, validation_rows=50).validation


def test_a_recursive_glob_names_documents_relative_to_its_fixed_part(tmp_path: Path, docs: Path) -> None:
    corpus = load_corpus(recipe(tmp_path, [{"path": "docs/**/*.html"}]), tmp_path / "c")
    assert [p.document for p in corpus.passages] == ["sub/page.html"]
    assert corpus.sources[0].label == "local documents 1"


def test_where_keeps_only_the_table_rows_it_names_and_their_ids_do_not_move(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    pd.DataFrame({"text": ["A review praising the acting of the lead.", "Plot: a farmer finds a map to gold.",
                           "A review calling the pacing slow and dull."],
                  "kind": ["fresh", "plot", "rotten"], "year": [2001, 2002, 2003]}).to_csv(tmp_path / "docs" / "t.csv", index=False)
    every = load_corpus(recipe(tmp_path, [{"path": "docs/t.csv"}]), tmp_path / "c0")
    reviews = load_corpus(recipe(tmp_path, [{"path": "docs/t.csv", "where": {"kind": ["fresh", "rotten"]}}]), tmp_path / "c1")
    assert len(every.passages) == 3
    assert [p.document for p in reviews.passages] == ["t.csv#0", "t.csv#2"]
    assert {p.id for p in reviews.passages} < {p.id for p in every.passages}
    both = load_corpus(recipe(tmp_path, [{"path": "docs/t.csv", "where": {"kind": ["fresh", "rotten"], "year": ["2003"]}}]),
                       tmp_path / "c2")
    assert [p.document for p in both.passages] == ["t.csv#2"], "every condition must hold; values compare as text"
    with pytest.raises(DataError, match=r"no usable passage.*no column 'genre' \(where\)"):
        load_corpus(recipe(tmp_path, [{"path": "docs/t.csv", "where": {"genre": ["drama"]}}]), tmp_path / "c3")
    (tmp_path / "docs" / "notes.txt").write_text("A plain text note about a film festival.")
    mixed = load_corpus(recipe(tmp_path, [{"path": "docs", "where": {"kind": ["fresh"]}}]), tmp_path / "c4")
    assert [p.document for p in mixed.passages] == ["t.csv#0"]
    assert {p["name"]: p["reason"] for p in mixed.sources[0].problems}["notes.txt"].startswith("not a table")


def test_links_that_lead_nowhere_and_text_in_other_encodings_are_named_or_decoded(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kept.txt").write_text("The copper kettle whistles at dawn and boils water in three minutes.")
    (folder / "gone.txt").symlink_to(folder / "deleted.txt")
    (folder / "loop-a.txt").symlink_to(folder / "loop-b.txt")
    (folder / "loop-b.txt").symlink_to(folder / "loop-a.txt")
    (folder / "linked.txt").symlink_to(folder / "kept.txt")  # a link to a file is read like the file
    french = "Le café était très agréable, et la crème brûlée était délicieuse. Où est l'hôtel près de la gare ?"
    (folder / "windows.txt").write_bytes(french.encode("cp1252"))
    (folder / "japanese.txt").write_bytes("これは日本語の文章です。映画はとても面白かったです。また見たいと思います。".encode("shift_jis"))
    (folder / "noise.txt").write_bytes(bytes(range(256)) * 4)
    for spec in ([{"path": "docs"}], [{"path": "docs/*.txt"}]):
        corpus = load_corpus(recipe(tmp_path, spec), tmp_path / "run" / spec[0]["path"].replace("*", "star") / "corpus")
        problems = {p["name"]: p["reason"] for p in corpus.sources[0].problems}
        assert problems["gone.txt"] == f"a dangling symbolic link (to {folder / 'deleted.txt'})"
        assert problems["loop-a.txt"] == problems["loop-b.txt"] == "a symbolic link loop"
        assert problems["noise.txt"].startswith("not UTF-8")
        texts = " ".join(p.text for p in corpus.passages)
        assert french in texts and "映画はとても面白かった" in texts
        assert "windows.txt" not in problems and "japanese.txt" not in problems
