"""The run directory: request cache, append-only rows, atomic writes, lock and manifest (its dataset/
folder is written and read by factory.run.dataset).

Everything a run finishes is on disk before the next step starts, so a crash or Ctrl+C loses
nothing: a re-run reads the cache and never sends a finished request again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from factory.errors import CacheDamagedError, RunLockedError
from factory.records import WEIGHT, Completion, Prompt, Record, Rejected
from factory.run.dataset import write_dataset
from factory.run.manifest import Manifest
from factory.secrets import redact

log = logging.getLogger(__name__)


def request_key(identity: dict[str, Any], prompt: Prompt) -> str:
    """Stable key of one request: generator identity, messages, schema and seed: what makes the reply.

    Not the prompt's place in the run (its bucket and index): a prompt whose messages an edit left as
    they were, at whatever index, finds its reply (its seed comes from its messages: `settle_seeds`).
    Nothing process- or machine-specific goes in, so any worker computes the same key; nothing
    secret goes in either (identities carry the endpoint host, never a key).
    """
    payload = {"generator": identity, "messages": prompt.messages, "schema": prompt.schema, "seed": prompt.seed}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def settle_seeds(prompts: Iterable[Prompt], seen: Counter[str], salt: int | None) -> None:
    """Give each prompt a seed drawn from its own generator, messages and schema, the recipe's seed
    (`salt`: Recipe.seed_salt) and how many prompts with the same ones came before it in the run (`seen`, updated):
    an edit that leaves a prompt's messages as they were leaves its seed, and so its cached reply,
    usable; two identical prompts of one run still get two seeds, and two replies."""
    for prompt in prompts:
        same = hashlib.sha256(json.dumps([prompt.generator, prompt.messages, prompt.schema], sort_keys=True,
                                         ensure_ascii=False).encode()).hexdigest()
        occurrence = seen[same]
        seen[same] += 1
        prompt.seed = int(hashlib.sha256(f"{salt}/{same}/{occurrence}".encode()).hexdigest()[:8], 16) % 2**31


STAGE_WEIGHTS = "stage_weights.json"


def stage_rows(run_dir: Path, by_id: dict[str, Record]) -> dict[str, list[Record]]:
    """The rows that stood after each stage (stages.json), each with the weight it had there (stage_weights.json;
    a run written before that file keeps the weights its rows were parsed with)."""
    stages = json.loads((run_dir / "stages.json").read_text(encoding="utf-8"))
    path = run_dir / STAGE_WEIGHTS
    weights: dict[str, dict[str, float]] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    out: dict[str, list[Record]] = {}
    for name, ids in stages.items():
        rows = [by_id[i] for i in ids]
        if name in weights:  # the weight a row had after this stage, or none (1.0)
            rows = [dataclasses.replace(r, meta={**{k: v for k, v in r.meta.items() if k != WEIGHT},
                                                 **({WEIGHT: weights[name][r.id]} if r.id in weights[name] else {})})
                    for r in rows]
        out[name] = rows
    return out


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def sqlite_errors(path: Path, remedy: str) -> Iterator[None]:
    """Turn SQLite's raw errors about the file at `path` into a message that names it and says what to do."""
    try:
        yield
    except sqlite3.OperationalError as exc:  # locked, disk full, I/O error: the file may be fine
        raise CacheDamagedError(f"cannot use {path}: {exc}. {remedy}") from None
    except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
        raise CacheDamagedError(
            f"{path} is damaged ({exc}); move it aside (for example: mv {path} {path}.damaged) and run the "
            f"command again. {remedy}"
        ) from None


class RequestCache:
    """requests.sqlite: request key -> completion. One commit per completion, so SIGKILL loses at most the in-flight ones."""

    REMEDY = ("The finished rows in generated.jsonl are kept; without this file the next build sends "
              "their requests again (a local model with the recipe's seed writes the same rows).")

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._errors():
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS requests "
                "(key TEXT PRIMARY KEY, request TEXT NOT NULL, completion TEXT NOT NULL, created REAL NOT NULL)"
            )

    def _errors(self) -> AbstractContextManager[None]:
        return sqlite_errors(self.path, self.REMEDY)

    def get(self, key: str) -> Completion | None:
        with self._errors():
            row = self._db.execute("SELECT completion FROM requests WHERE key = ?", (key,)).fetchone()
        return Completion.from_json(json.loads(row[0])) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        keys = list(keys)
        found: dict[str, Completion] = {}
        with self._errors():
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(f"SELECT key, completion FROM requests WHERE key IN ({marks})", chunk):
                    found[key] = Completion.from_json(json.loads(value))
        return found

    def put(self, key: str, prompt: Prompt, identity: dict[str, Any], completion: Completion) -> None:
        request = {"generator": identity, "messages": prompt.messages, "seed": prompt.seed, "prompt": prompt.uid}
        with self._errors():
            self._db.execute(
                "INSERT OR REPLACE INTO requests (key, request, completion, created) VALUES (?, ?, ?, ?)",
                # The request as sent, scrubbed: a key pasted into extra_body or a URL must not rest here.
                (key, redact(json.dumps(request, ensure_ascii=False)), json.dumps(completion.to_json(), ensure_ascii=False),
                 time.time()),
            )

    def __len__(self) -> int:
        with self._errors():
            return self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]

    def spent_usd(self) -> float:
        """What the stored replies cost when they were sent: the run's spend so far (a reply is paid once)."""
        with self._errors():
            total = self._db.execute("SELECT SUM(json_extract(completion, '$.cost_usd')) FROM requests").fetchone()[0]
        return float(total or 0.0)

    def keys(self) -> Iterator[str]:
        with self._errors():
            yield from (key for (key,) in self._db.execute("SELECT key FROM requests"))

    def close(self) -> None:
        self._db.close()


TORN_LINES = "torn-lines.jsonl"


_SALVAGED = "\0salvaged"


def _parse_line(line: str) -> dict[str, Any] | None:
    """One JSONL row; for a row glued to a torn fragment in front of it (what versions before the
    torn-line check wrote after a crash), the row itself. None when nothing whole is on the line."""
    try:
        row = json.loads(line)
        return row if isinstance(row, dict) else None
    except json.JSONDecodeError:
        pass
    start = line.find('{"', 1)
    while start > 0:
        try:
            row = json.loads(line[start:])
        except json.JSONDecodeError:
            start = line.find('{"', start + 1)
            continue
        return {**row, _SALVAGED: True} if isinstance(row, dict) else None
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of an append-only JSONL file, for any reader of a run directory.

    A crash can leave half a line at the end (and versions before this reader glued the next row to
    it): fragments are skipped with one warning, never raised (a row glued to one is kept), because
    every row they held is rebuilt from requests.sqlite by the next build.
    """
    path = Path(path)
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    unreadable = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = _parse_line(line)
            if row is None:
                unreadable += 1
                continue
            if row.get(_SALVAGED):
                del row[_SALVAGED]
                unreadable += 1  # the fragment in front of it
            rows.append(row)
    if unreadable:
        log.warning("%s: skipped %d unreadable line(s) (a crash tore them); the next build rebuilds their rows",
                    path, unreadable)
    return rows


def set_aside_torn_tail(path: Path) -> int:
    """Move a torn last line (no newline after it) out of `path` into torn-lines.jsonl beside it.

    Called before a build appends, so that its first row does not land glued to the fragment. The
    fragment is kept (with the file name and time) for whoever wants to look; returns its size.
    """
    if not path.is_file():
        return 0
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        # Find the start of the last line: read backwards in blocks until a newline.
        end, start = size, 0
        position = size
        while position > 0:
            step = min(65536, position)
            position -= step
            handle.seek(position)
            block = handle.read(step)
            cut = block.rfind(b"\n")
            if cut >= 0:
                start = position + cut + 1
                break
        handle.seek(start)
        fragment = handle.read(end - start)
        entry = {"file": path.name, "set_aside": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "bytes": len(fragment), "fragment": fragment.decode("utf-8", errors="replace")}
        with (path.parent / TORN_LINES).open("a", encoding="utf-8") as aside:
            aside.write(json.dumps(entry, ensure_ascii=False) + "\n")
            aside.flush()
            os.fsync(aside.fileno())
        handle.truncate(start)
        handle.flush()
        os.fsync(handle.fileno())
    log.warning("%s ended in a torn line (%d bytes, from a crash); it was set aside in %s and its row will be rebuilt",
                path, len(fragment), path.parent / TORN_LINES)
    return len(fragment)


class JsonlLog:
    """An append-only JSONL file that skips ids it already holds (so resumed runs add no duplicates)."""

    def __init__(self, path: Path, key: tuple[str, ...] = ("id",)) -> None:
        self.path = path
        self.key = key
        self._seen: set[tuple[Any, ...]] = set()
        self._rows: list[dict[str, Any]] = []
        set_aside_torn_tail(path)
        for row in read_jsonl(path):
            if self._ident(row) not in self._seen:
                self._seen.add(self._ident(row))
                self._rows.append(row)
        self._handle = path.open("a", encoding="utf-8")

    def _ident(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row.get(k) for k in self.key)

    def append(self, rows: Iterable[dict[str, Any]]) -> int:
        added = 0
        for row in rows:
            ident = self._ident(row)
            if ident in self._seen:
                continue
            self._seen.add(ident)
            self._rows.append(row)
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            added += 1
        if added:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        return added

    def __contains__(self, ident: tuple[Any, ...]) -> bool:
        return ident in self._seen

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def close(self) -> None:
        self._handle.close()


class RunStore:
    """One run directory (DESIGN.md §4). Use as a context manager: it holds the run's lock."""

    def __init__(self, root: Path, claim: Callable[[Path], Any] | None = None) -> None:
        """`claim`, called with the root once the lock is held and before any file is opened (a build
        makes the directory its recipe's: run/claim.py); what it returns is kept as `claimed`."""
        self.root = Path(root)
        self._lock = FileLock(str(self.root / ".lock"), timeout=0)
        self._claim = claim
        self.claimed: Any = None

    def __enter__(self) -> RunStore:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunLockedError(
                f"{self.root} is in use by another `factory build` (lock file {self.root / '.lock'}); "
                "wait for it to finish or use another --out directory"
            ) from None
        if self._claim is not None:
            try:
                self.claimed = self._claim(self.root)
            except BaseException:
                self._lock.release()
                raise
        self.cache = RequestCache(self.root / "requests.sqlite")
        self.generated = JsonlLog(self.root / "generated.jsonl")
        return self

    def __exit__(self, *exc: object) -> None:
        self.cache.close()
        self.generated.close()
        self._lock.release()

    def add_records(self, records: Iterable[Record]) -> int:
        return self.generated.append(r.to_json() for r in records)

    def records(self) -> Iterator[Record]:
        return (Record.from_json(row) for row in self.generated.rows())

    def write_rejected(self, rows: Iterable[Rejected], into: Path | None = None) -> None:
        """rejected.jsonl: this build's dropped rows, and only these (each (id, stage) once). Written whole
        at the end: rows an earlier version of the recipe dropped are not this run's to show or push,
        and a resumed build finds its own again from the request cache."""
        seen: set[tuple[str, str]] = set()
        lines = []
        for row in rows:
            if (row.id, row.stage) not in seen:
                seen.add((row.id, row.stage))
                lines.append(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
        atomic_write_text((into or self.root) / "rejected.jsonl", "".join(lines))

    def write_kept(self, rows: Iterable[Record], into: Path | None = None) -> None:
        """kept.jsonl: the final rows as the filters left them, their scores in `meta` (confidence, critic,
        judge, weight, cluster), for `factory review`; generated.jsonl holds only what the parse gave."""
        atomic_write_text((into or self.root) / "kept.jsonl",
                          "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in rows))

    def write_stages(self, stages: dict[str, list[Record]], into: Path | None = None) -> None:
        """stages.json: the ids that stood after each stage, so `factory eval` can re-score the ablation; and
        stage_weights.json: each row's weight after each stage (a weight stage sets it; generated.jsonl holds
        only the parse's)."""
        atomic_write_text((into or self.root) / "stages.json",
                          json.dumps({name: [r.id for r in rows] for name, rows in stages.items()}) + "\n")
        weights = {name: {r.id: r.meta[WEIGHT] for r in rows if WEIGHT in r.meta} for name, rows in stages.items()}
        atomic_write_text((into or self.root) / STAGE_WEIGHTS, json.dumps(weights) + "\n")

    def write_manifest(self, manifest: Manifest, into: Path | None = None) -> None:
        # redact(): a safety net, should a secret ever reach a recipe field that is not a variable's name.
        atomic_write_text((into or self.root) / "manifest.json", redact(manifest.to_json()))

    def unused_cache_entries(self, used: set[str]) -> int:
        """Replies in the request cache that are not among `used` (request keys)."""
        return sum(1 for key in self.cache.keys() if key not in used)

    def write_dataset(self, configs: dict[str, dict[str, list[dict[str, Any]]]],
                      schemas: dict[str, dict[str, str]] | None = None, into: Path | None = None) -> None:
        """dataset/ in this run directory (or `into`): see factory.run.dataset.write_dataset."""
        write_dataset(into or self.root, configs, schemas)
