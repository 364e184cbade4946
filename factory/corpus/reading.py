"""Reading a `sources:` entry into documents: files, folders, globs, tables, PDFs, Hub datasets.

Every file that cannot be read, and every document with no text, comes back as a `Problem` with
its name: the corpus reports them, never skips them silently.
"""

from __future__ import annotations

import errno
import glob
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

from factory.data.real import local_path, read_table
from factory.errors import DataError
from factory.spec import SourceSpec

if TYPE_CHECKING:
    import pandas as pd

# Among legacy encodings that read a file equally well, the most widespread wins (Windows' Western
# European code page, then ISO Latin-1 and Latin-9); a tie among others is reported, not guessed.
PREFERRED_LEGACY = ("cp1252", "latin_1", "iso8859_15")
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")
HTML_SUFFIXES = (".html", ".htm")
TABLE_SUFFIXES = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz", ".csv.bz2", ".parquet")
SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + TABLE_SUFFIXES + (".pdf",)


@dataclass(slots=True, frozen=True)
class Document:
    """One document's raw text and its name: a path relative to the source, `file#row`, or `owner/name#row`."""

    name: str
    text: str


@dataclass(slots=True, frozen=True)
class Problem:
    """A file or document the corpus could not use, and why."""

    name: str
    reason: str


class _HTMLText(HTMLParser):
    """The visible text of an HTML page: no scripts, styles or markup; block elements end lines."""

    BLOCKS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "blockquote", "pre"}
    HIDDEN = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


_MD_RULES = [
    (re.compile(r"^```.*?$", re.MULTILINE), ""),  # fence lines (the code inside is kept as text)
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: their alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links: their text
    (re.compile(r"^\s{0,3}(#{1,6}|>|[-*+]|\d+\.)\s+", re.MULTILINE), ""),  # headings, quotes, list marks
    (re.compile(r"(\*\*|__|`)"), ""),  # emphasis and code marks
]


def html_text(source: str) -> str:
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    return "".join(parser.parts)


def markdown_text(source: str) -> str:
    for pattern, replacement in _MD_RULES:
        source = pattern.sub(replacement, source)
    return source


def _pdf_reader():  # noqa: ANN202 - pypdf's PdfReader class
    """pypdf's reader; a missing extra stops the build (every PDF would fail), not one document."""
    try:
        from pypdf import PdfReader
    except ImportError:
        raise DataError("sources: reading PDFs needs pypdf (pip install 'dataset-factory[pdf]')") from None
    return PdfReader


def _table_documents(table: pd.DataFrame, name: str, spec: SourceSpec) -> Iterator[Document | Problem]:
    """One document per row of `text_column`, among the rows that `where` keeps. A row keeps its
    position in the table as its id, so narrowing `where` changes no other document's id."""
    missing = [c for c in (spec.text_column, *spec.where) if c not in table.columns]
    if missing:
        raise ValueError(f"no column {missing[0]!r} ({'text_column' if missing[0] == spec.text_column else 'where'}); "
                         f"the table has {list(table.columns)}")
    for column, values in spec.where.items():  # the readers give a 0..n-1 index: the row's position
        table = table[table[column].astype(str).isin(values)]
    for row, value in zip(table.index, table[spec.text_column]):
        text = "" if value is None else str(value)
        yield Document(f"{name}#{row}", text) if text.strip() else Problem(f"{name}#{row}", "empty")


def decode(data: bytes) -> str:
    """The text of a file: UTF-8, or the encoding charset-normalizer detects with confidence.

    UnicodeDecodeError when no encoding reads it, or when several read it equally well but differently."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        failure = exc
    from charset_normalizer import from_bytes  # only for the rare file that is not UTF-8

    matches = list(from_bytes(data))
    if not matches:
        raise UnicodeDecodeError("utf-8", data, failure.start, failure.end, "not UTF-8, and no encoding reads it as text")
    best = matches[0]
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    if len({str(m) for m in tied}) > 1:
        preferred = [m for e in PREFERRED_LEGACY for m in tied if m.encoding == e]
        if not preferred:
            raise UnicodeDecodeError("utf-8", data, failure.start, failure.end, "not UTF-8, and its encoding is ambiguous ("
                                     + ", ".join(m.encoding for m in tied) + " read it differently)")
        best = preferred[0]
    return str(best)


def _file_documents(path: Path, name: str, spec: SourceSpec) -> Iterator[Document | Problem]:
    lower = path.name.lower()
    link = _broken_link(path)
    if link is not None:
        yield Problem(name, link)
        return
    pdf_reader = _pdf_reader() if lower.endswith(".pdf") else None
    try:
        if lower.endswith(TABLE_SUFFIXES):
            yield from _table_documents(read_table(str(path), path.parent, field="sources"), name, spec)
            return
        if spec.where:  # reported, not read whole: the user asked for matching rows only
            yield Problem(name, "not a table: `where` cannot select its rows")
            return
        if pdf_reader is not None:
            text = "\n\n".join(page.extract_text() or "" for page in pdf_reader(path).pages)
        else:
            raw = decode(path.read_bytes())
            text = html_text(raw) if lower.endswith(HTML_SUFFIXES) else markdown_text(raw) if lower.endswith((".md", ".markdown")) else raw
    except UnicodeDecodeError as exc:
        yield Problem(name, exc.reason if exc.reason.startswith("not UTF-8") else "not UTF-8 text")
        return
    except Exception as exc:  # noqa: BLE001 - read_table, pypdf and the OS raise many types; the reason is reported
        yield Problem(name, f"unreadable: {type(exc).__name__}: {str(exc)[:200]}")
        return
    yield Document(name, text) if text.strip() else Problem(name, "empty")


def _broken_link(path: Path) -> str | None:
    """Why `path` is a symbolic link that leads to no file (dangling, or a loop), or None."""
    if not path.is_symlink():
        return None
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"a dangling symbolic link (to {os.readlink(path)})"
    return None


def _listed(path: Path) -> bool:
    """A file to read, or a link that should have been one (reported, never skipped silently)."""
    return path.is_file() or (path.is_symlink() and _broken_link(path) is not None)


def source_files(spec: SourceSpec, base_dir: Path) -> list[tuple[Path, str]]:
    """(path, name) of every file the entry names; a name is relative to the folder or glob's fixed part."""
    if spec.path.startswith("package:"):
        path = local_path(spec.path, base_dir, "sources")
        return [(path, path.name)]
    pattern = spec.path if Path(spec.path).is_absolute() else str(base_dir / spec.path)
    if any(ch in spec.path for ch in "*?["):
        fixed = pattern.split("*")[0].split("?")[0].split("[")[0]  # the part before the first wildcard
        root = Path(fixed) if fixed.endswith(("/", "\\")) else Path(fixed).parent
        found = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if _listed(Path(p))]
    elif Path(pattern).is_dir():
        root = Path(pattern)
        found = sorted(p for p in root.rglob("*") if _listed(p) and p.name.lower().endswith(SUFFIXES))
    else:
        root = Path(pattern).parent
        found = [Path(pattern)]
    if not found or not (found[0].exists() or found[0].is_symlink()):
        raise DataError(f"sources: {spec.path!r} matches no file")
    return [(p, str(p.relative_to(root)) if p.is_relative_to(root) else p.name) for p in found]


def read_source(spec: SourceSpec, base_dir: Path, seed: int) -> Iterator[Document | Problem]:
    """The documents of one `sources:` entry, and the problems met on the way."""
    if spec.path.startswith("hf:"):
        yield from _hub_documents(spec, seed)
        return
    items: list[Document | Problem] = []
    for path, name in source_files(spec, base_dir):
        if not path.name.lower().endswith(SUFFIXES):
            items.append(Problem(name, f"not a known document type ({', '.join(SUFFIXES)})"))
            continue
        items.extend(_file_documents(path, name, spec))
    yield from _sample(items, spec.max_documents, seed)


def _hub_documents(spec: SourceSpec, seed: int) -> Iterator[Document | Problem]:
    name = spec.path[3:]
    table = read_table(spec.path, Path.cwd(), split=spec.split, field="sources")
    try:
        items = list(_table_documents(table, name, spec))
    except ValueError as exc:
        raise DataError(f"sources: {name}: {exc}") from exc
    yield from _sample(items, spec.max_documents, seed)


def _sample(items: list[Document | Problem], most: int | None, seed: int) -> list[Document | Problem]:
    documents = [d for d in items if isinstance(d, Document)]
    if most is None or len(documents) <= most:
        return items
    chosen = {id(d) for d in random.Random(f"{seed}/sources").sample(documents, most)}
    return [d for d in items if not isinstance(d, Document) or id(d) in chosen]
