"""The user's documents as a corpus of passages: read, cleaned, chunked, deduplicated, cached.

`load_corpus` reads a recipe's `sources:` once per run and caches the result in the run directory
(`corpus/`), keyed by the sources, the chunking and each file's size and modification time: a
resumed run gets exactly the same passages, so its prompts (and their cache keys) are unchanged.
Ids are stable: a document's id is a hash of its cleaned text, a passage's is the document's id and
its position, so moving or renaming a file changes no id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from factory.corpus.chunking import chunk, clean, count_tokens
from factory.corpus.overlap import overlapping
from factory.corpus.reading import Document, Problem, read_source, source_files
from factory.errors import DataError
from factory.records import Record
from factory.spec import RecipeBase, SourceSpec
from factory.text import normalize

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: files in other encodings are decoded, links that lead nowhere are reported


@dataclass(slots=True, frozen=True)
class Passage:
    """One chunk of one document: what a grounded prompt shows the model."""

    id: str
    text: str
    source: int  # index into the recipe's sources
    document: str  # the document's name within its source


@dataclass
class SourceStats:
    """What one `sources:` entry gave: documents read, passages kept, and every problem by name."""

    label: str
    documents: int = 0
    passages: int = 0
    duplicates: int = 0
    too_short: int = 0
    validation_overlap: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Corpus:
    """The passages of a run, in a stable order, with per-source statistics."""

    passages: list[Passage]
    sources: list[SourceStats]

    def describe(self) -> list[dict[str, Any]]:
        """Per-source counts for the manifest (the recipe already names the paths)."""
        return [asdict(s) for s in self.sources]


def source_label(spec: SourceSpec, index: int) -> str:
    """A public name for a source: the recipe's `name`, a Hub id, a package file's name, or "local
    documents N" (a user's folder and file names are not for publishing)."""
    if spec.name:
        return spec.name
    if spec.path.startswith("hf:"):
        return spec.path
    if spec.path.startswith("package:"):
        return spec.path.split("/")[-1]
    return f"local documents {index + 1}"


def _fingerprint(recipe: RecipeBase) -> str:
    """Changes when the sources, the chunking or any file they name changes (size or modification time)."""
    files = [(str(path), *_state(path)) for spec in recipe.sources if not spec.path.startswith("hf:")
             for path, _ in source_files(spec, recipe.base_dir)]
    data = {"version": CACHE_VERSION, "sources": [s.model_dump() for s in recipe.sources],
            "chunking": recipe.grounding.chunking.model_dump(), "seed": recipe.seed, "files": files}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _state(path: Path) -> tuple[int, int] | tuple[str, str]:
    """A file's size and modification time; for a link that leads nowhere, where it points."""
    try:
        stat = path.stat()
    except OSError:
        return "link", os.readlink(path)
    return stat.st_size, stat.st_mtime_ns


def load_corpus(recipe: RecipeBase, cache_dir: Path, validation: Sequence[Record] = ()) -> Corpus:
    """The recipe's passages (from the cache when nothing changed). Raises DataError when no passage is
    usable, or when a passage contains a real validation row and its source does not exclude them."""
    key = _fingerprint(recipe)
    cached = _read_cache(cache_dir, key)
    corpus = cached or _build(recipe)
    if cached is None and corpus.passages:
        _write_cache(cache_dir, key, corpus)  # as read: the validation guard below runs on every load
    _guard_validation(recipe, corpus, validation)
    if not corpus.passages:
        raise DataError("sources: no usable passage in any source; problems: " + _problem_summary(corpus))
    for index, stats in enumerate(corpus.sources):
        if stats.problems:
            log.warning("sources[%d] %s: %d document(s) not used: %s", index, stats.label, len(stats.problems),
                        "; ".join(f"{p['name']} ({p['reason']})" for p in stats.problems[:5]))
    return corpus


def _problem_summary(corpus: Corpus) -> str:
    problems = [f"{p['name']} ({p['reason']})" for s in corpus.sources for p in s.problems]
    if any(s.validation_overlap for s in corpus.sources):
        problems.append(f"{sum(s.validation_overlap for s in corpus.sources)} passage(s) dropped for holding real validation rows")
    return "; ".join(problems[:10]) or "none reported (every document was shorter than chunking.min_tokens)"


def _build(recipe: RecipeBase) -> Corpus:
    chunking = recipe.grounding.chunking
    passages: list[Passage] = []
    seen_documents: set[str] = set()
    seen_passages: set[str] = set()
    stats_list = []
    for index, spec in enumerate(recipe.sources):
        stats = SourceStats(source_label(spec, index))
        stats_list.append(stats)
        for item in read_source(spec, recipe.base_dir, recipe.seed):
            if isinstance(item, Problem):
                stats.problems.append({"name": item.name, "reason": item.reason})
                continue
            assert isinstance(item, Document)
            text = clean(item.text)
            if not text:
                stats.problems.append({"name": item.name, "reason": "empty after cleaning"})
                continue
            doc_id = "d" + hashlib.sha256(text.encode()).hexdigest()[:12]
            stats.documents += 1
            if doc_id in seen_documents:
                stats.duplicates += 1
                continue
            seen_documents.add(doc_id)
            for k, piece in enumerate(chunk(text, chunking.size, chunking.overlap)):
                if count_tokens(piece) < chunking.min_tokens:
                    stats.too_short += 1
                    continue
                norm = normalize(piece)
                if norm in seen_passages:
                    stats.duplicates += 1
                    continue
                seen_passages.add(norm)
                passages.append(Passage(f"{doc_id}-{k}", piece, index, item.name))
                stats.passages += 1
    return Corpus(passages, stats_list)


def _guard_validation(recipe: RecipeBase, corpus: Corpus, validation: Sequence[Record]) -> None:
    """No real validation row may reach a prompt: drop the passages holding one where the source
    allows it, and refuse to build where it does not."""
    if not validation:
        return
    hits = overlapping([p.text for p in corpus.passages], [r.text for r in validation])
    if not hits:
        return
    by_source = Counter(corpus.passages[k].source for k in hits)
    refused = [s for s in by_source if not recipe.sources[s].exclude_real_validation]
    if refused:
        s = refused[0]
        example = next(corpus.passages[k] for k in sorted(hits) if corpus.passages[k].source == s)
        raise DataError(
            f"sources[{s}] ({corpus.sources[s].label}): {by_source[s]} passage(s) contain a real validation row "
            f"(first: {example.document}, passage {example.id}); a validation row in a prompt would inflate the eval. "
            f"Remove those documents, or set `exclude_real_validation: true` on sources[{s}] to drop them.")
    for s, n in by_source.items():
        corpus.sources[s].validation_overlap = n
        corpus.sources[s].passages -= n
    corpus.passages = [p for k, p in enumerate(corpus.passages) if k not in hits]


def _read_cache(cache_dir: Path, key: str) -> Corpus | None:
    path = cache_dir / "passages.jsonl"
    meta_path = cache_dir / "corpus.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("key") != key:
            log.info("sources changed since %s was written: reading them again", cache_dir)
            return None
        with path.open(encoding="utf-8") as lines:
            passages = [Passage(**json.loads(line)) for line in lines]
        if len(passages) != meta["passages"]:
            return None
        return Corpus(passages, [SourceStats(**s) for s in meta["sources"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no cache, or a damaged one: read the sources again


def _write_cache(cache_dir: Path, key: str, corpus: Corpus) -> None:
    """Passages first, then the index that vouches for them; each written whole, then renamed."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, content in (
        ("passages.jsonl", "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in corpus.passages)),
        ("corpus.json", json.dumps({"key": key, "passages": len(corpus.passages), "sources": corpus.describe()}, indent=1)),
    ):
        tmp = cache_dir / f".{name}.tmp"
        with tmp.open("w", encoding="utf-8") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(cache_dir / name)
