"""What the review page shows: every row of a run, kept or dropped, with its provenance, scores and decision.

Read from the run directory only: kept.jsonl (the final rows and their scores), rejected.jsonl (each dropped
row with the stage and reason), generated.jsonl (what the parse gave, for rows dropped before the filters
scored them) and corpus/passages.jsonl (grounding passages); the server adds the decisions, read fresh for
each request. The 2-D map is computed apart (`embedding_map`), because embedding a large run takes a while
and the rows must show at once.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from factory.records import FEW_SHOT, STAGE_FINAL, WEIGHT
from factory.run.manifest import load_manifest
from factory.run.store import read_jsonl

# Meta keys that are scores a filter gave (shown as scores, not provenance).
SCORES = ("confidence", "critic_score", "judge_score", WEIGHT, "agreement")
PROVENANCE = ("generator", "model", "bucket", "index", FEW_SHOT, "document", "source_index", "passage_id")
KEPT, DROPPED = "kept", "rejected"
DETAIL_KEYS = ("fields", "detail", "provenance", "scores")  # what one row's view adds


def _scores(meta: dict[str, Any]) -> dict[str, Any]:
    found = {k: meta[k] for k in SCORES if isinstance(meta.get(k), int | float)}
    found.update({k: v for k, v in meta.items() if k.startswith("judge_") and isinstance(v, int | float)})
    annotation = meta.get("annotation")
    if isinstance(annotation, dict) and "agreement" in annotation:
        found["agreement"] = annotation["agreement"]
    return found


def _provenance(meta: dict[str, Any], passages: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {k: meta[k] for k in PROVENANCE if meta.get(k) not in (None, "")}
    axes = {k.removeprefix("axis_"): v for k, v in meta.items() if k.startswith("axis_")}
    if axes:
        out["axes"] = axes
    if meta.get("passage_id") in passages:
        out["passage"] = passages[meta["passage_id"]]
    if meta.get("relabelled_from"):
        out["relabelled_from"] = meta["relabelled_from"]
    return out


def review_rows(run_dir: Path) -> dict[str, Any]:
    """The page's data: the run's labels and every row, kept first, then dropped, each once."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    parsed = {row["id"]: row for row in read_jsonl(run_dir / "generated.jsonl")}
    passages = {p["id"]: p["text"] for p in read_jsonl(run_dir / "corpus" / "passages.jsonl")}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    kept_path = run_dir / "kept.jsonl"
    # A run built before kept.jsonl existed: its final rows from stages.json, as the parse gave them (no scores).
    kept_rows = read_jsonl(kept_path) if kept_path.is_file() else [
        parsed[i] for i in _final_ids(run_dir) if i in parsed]
    for row in kept_rows:
        seen.add(row["id"])
        rows.append(_row(row["id"], row.get("fields") or {}, row.get("label"), row.get("meta") or {}, KEPT, "", "", "",
                         passages))
    for drop in read_jsonl(run_dir / "rejected.jsonl"):
        if drop["id"] in seen:
            continue
        seen.add(drop["id"])
        source = parsed.get(drop["id"]) or {}
        fields = source.get("fields") or {"text": drop.get("text", "")}
        meta = {**(source.get("meta") or {}), **(drop.get("meta") or {})}
        rows.append(_row(drop["id"], fields, drop.get("label"), meta, DROPPED, drop.get("stage", ""),
                         drop.get("reason", ""), drop.get("detail", ""), passages))
    # A kind whose rows carry labels has them as its targets; one without (instructions, tables) offers no relabel.
    labels = list(manifest.targets) if any(r["label"] is not None for r in rows) else []
    return {"name": manifest.name, "task": manifest.task, "labels": labels, "rows": rows,
            "built": manifest.timings.started, "review": manifest.review}


def _final_ids(run_dir: Path) -> list[str]:
    path = run_dir / "stages.json"
    return json.loads(path.read_text(encoding="utf-8")).get(STAGE_FINAL, []) if path.is_file() else []


def _row(row_id: str, fields: dict[str, Any], label: str | None, meta: dict[str, Any], status: str, stage: str,
         reason: str, detail: str, passages: dict[str, str]) -> dict[str, Any]:
    texts = {k: v if isinstance(v, str) else str(v) for k, v in fields.items()}
    return {"id": row_id, "text": next(iter(texts.values()), ""), "fields": texts if len(texts) > 1 else None,
            "label": label, "status": status, "stage": stage, "reason": reason, "detail": detail,
            "generator": meta.get("generator", ""), "cluster": meta.get("cluster"),
            "provenance": _provenance(meta, passages), "scores": _scores(meta)}


def prompt_of(run_dir: Path, row_id: str) -> list[dict[str, str]] | None:
    """The messages of the request that made a row (its system prompt, few-shot examples, axes, passage), from
    requests.sqlite, opened read-only. A row's id starts with the first 16 hex digits of its request's key."""
    prefix = row_id[:16]
    path = Path(run_dir) / "requests.sqlite"
    if len(prefix) < 16 or not path.is_file() or any(c not in "0123456789abcdef" for c in prefix):
        return None
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            found = db.execute("SELECT request FROM requests WHERE key >= ? AND key < ? LIMIT 1",
                               (prefix, prefix + "g")).fetchone()
    except sqlite3.Error:
        return None
    return json.loads(found[0]).get("messages") if found else None


def list_columns(data: dict[str, Any]) -> dict[str, Any]:
    """The page's list as columns, each categorical one as codes into its own table of values (a third of
    the bytes of one object per row)."""
    rows = data["rows"]
    columns: dict[str, Any] = {"id": [r["id"] for r in rows], "text": [r["text"] for r in rows],
                               "cluster": [r["cluster"] for r in rows]}
    for key in ("label", "status", "stage", "reason", "generator"):
        values = list(dict.fromkeys(r[key] for r in rows))
        code = {v: i for i, v in enumerate(values)}
        columns[key] = {"values": values, "codes": [code[r[key]] for r in rows]}
    return {**{k: v for k, v in data.items() if k != "rows"}, "count": len(rows), "columns": columns}


def embedding_map(run_dir: Path, rows: list[dict[str, Any]], seed: int = 0) -> dict[str, list[float | int]]:
    """Each row's place on a 2-D map (PCA of its MiniLM embedding, the run's embedding cache reused) and its
    KMeans cluster: {id: [x, y, cluster]}."""
    if len(rows) < 3:
        return {}
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.decomposition import PCA

    from factory.embeddings import Embedder

    vectors = Embedder(cache=Path(run_dir) / "embeddings.sqlite").encode([r["text"] for r in rows])
    points = PCA(n_components=2, random_state=seed).fit_transform(vectors)
    k = max(2, min(12, len(rows) // 25))
    clusters = MiniBatchKMeans(n_clusters=min(k, len(rows)), n_init=3, random_state=seed).fit_predict(vectors)
    return {r["id"]: [round(float(x), 4), round(float(y), 4), int(c)] for r, (x, y), c in zip(rows, points, clusters)}
