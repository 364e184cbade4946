"""report.html: one self-contained page (charts embedded as PNG) that shows a person what a run made."""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from factory.embeddings import Embedder
from factory.errors import require
from factory.eval.names import CONDITIONS, LINEAR, REAL, SYNTHETIC, SYNTHETIC_REAL
from factory.filters import TEXT
from factory.records import STAGE_FINAL, Record
from factory.run.manifest import FunnelStage, load_manifest
from factory.run.store import atomic_write_text, read_jsonl
from factory.tasks import task_kind

MAX_POINTS = 2000
SAMPLE = 12


def png(fig: Any) -> str:
    """A matplotlib figure as a data: URL (PNG), closed after; pages embed it so they stay one file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    require("matplotlib.pyplot", "hub").close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (or the pip extra to install)."""
    matplotlib = require("matplotlib", "hub")
    matplotlib.use("Agg")  # no display: render to PNG only
    return require("matplotlib.pyplot", "hub")


def balance_chart(before: Counter[str], after: Counter[str], labels: list[str]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(labels)), 3))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, [before[label] for label in labels], 0.4, label="generated (parsed)", color="#9bb7d4")
    ax.bar(x + 0.2, [after[label] for label in labels], 0.4, label="final dataset", color="#2d6a9f")
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel("rows")
    ax.set_title("Label balance before and after filtering")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize=8)
    return png(fig)


def funnel_chart(funnel: list[FunnelStage]) -> str:
    plt = pyplot()
    stages = [s.stage for s in funnel]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(stages) + 1))
    y = np.arange(len(stages))[::-1]
    ax.barh(y, [s.rows_in for s in funnel], color="#e3c9a8", label="in")
    ax.barh(y, [s.kept for s in funnel], color="#b5651d", label="kept")
    ax.set_yticks(y, stages)
    ax.set_xlabel("rows")
    ax.set_title("Filter funnel")
    ax.legend(loc="lower right")
    return png(fig)


def judge_chart(histogram: dict[str, int], threshold: float) -> str:
    plt = pyplot()
    scores = [float(k) for k in histogram]
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.bar(scores, list(histogram.values()), width=0.4,
           color=["#2d6a9f" if score >= threshold else "#c0504d" for score in scores])
    ax.axvline(threshold - 0.25, color="#555", linestyle="--", linewidth=1)
    ax.set_xlim(0.5, 5.5)
    ax.set_xlabel("judge score (red: dropped)")
    ax.set_ylabel("rows")
    ax.set_title("Judge scores")
    return png(fig)


def cluster_chart(records: list[Record], embedder: Embedder, seed: int, bucket: Callable[[Record], str]) -> str | None:
    """2-D PCA of the final rows' embeddings, one panel per bucket (label), coloured by KMeans cluster."""
    if len(records) < 4:
        return None
    decomposition, cluster = require("sklearn.decomposition", "eval"), require("sklearn.cluster", "eval")
    records = records[:MAX_POINTS]
    vectors = embedder.encode([r.text for r in records])
    points = decomposition.PCA(n_components=2, random_state=seed).fit_transform(vectors)
    labels = list(dict.fromkeys(bucket(r) for r in records))[:8]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 3.2), squeeze=False, sharex=True, sharey=True)
    for ax, label in zip(axes[0], labels):
        idx = np.array([i for i, r in enumerate(records) if bucket(r) == label])
        k = max(1, min(6, len(idx) // 8))
        colours = cluster.KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(vectors[idx]) if k > 1 else np.zeros(len(idx))
        ax.scatter(points[idx, 0], points[idx, 1], c=colours, cmap="tab10", s=10, alpha=0.8)
        ax.set_title(f"{label} ({len(idx)} rows, {k} clusters)", fontsize=9)
    fig.suptitle("Embedding clusters per label (PCA of MiniLM embeddings)", fontsize=10, y=1.06)
    return png(fig)


def eval_chart(ev: dict[str, Any]) -> str:
    plt = pyplot()
    conditions = CONDITIONS
    names = list(ev["evaluators"])
    has_ablation = bool(ev.get("ablation"))
    fig, axes = plt.subplots(1, 2 if has_ablation else 1, figsize=(11 if has_ablation else 6, 3.4), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / len(conditions)
    for i, condition in enumerate(conditions):
        means = [ev["evaluators"][n].get(condition, {}).get("macro_f1", {}).get("mean", 0) for n in names]
        stds = [ev["evaluators"][n].get(condition, {}).get("macro_f1", {}).get("std", 0) for n in names]
        ax.bar(np.arange(len(names)) + (i - 1) * width, means, width, yerr=stds, capsize=3, label=condition)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("macro-F1 on real validation rows")
    ax.set_title("Conditions (mean ± std over seeds)")
    ax.legend(fontsize=8)
    if has_ablation:
        ax = axes[0][1]
        rows = [a for a in ev["ablation"] if a[SYNTHETIC_REAL]]
        ax.plot([a["stage"] for a in rows], [a[SYNTHETIC_REAL]["mean"] for a in rows], marker="o", label=SYNTHETIC_REAL)
        synth = [a for a in rows if a[SYNTHETIC]]
        ax.plot([a["stage"] for a in synth], [a[SYNTHETIC]["mean"] for a in synth], marker="s", label=SYNTHETIC)
        real = ev["evaluators"].get(LINEAR, {}).get(REAL)
        if real:
            ax.axhline(real["macro_f1"]["mean"], color="grey", linestyle="--", label="real only")
        ax.set_title("Which stage helped (linear evaluator)")
        ax.tick_params(axis="x", rotation=25)
        ax.legend(fontsize=8)
    return png(fig)


def column_charts(distributions: dict[str, dict[str, Any]]) -> str:
    """One small panel per column: the real and the synthetic table's shares, side by side."""
    plt = pyplot()
    names = list(distributions)
    per_row = 3
    fig, axes = plt.subplots((len(names) + per_row - 1) // per_row, per_row, figsize=(11, 2.6 * ((len(names) + per_row - 1) // per_row)),
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        dist = distributions[name]
        if dist["kind"] == "category":
            x = np.arange(len(dist["values"]))
            ax.bar(x - 0.2, dist["real"], 0.4, label="real", color="#9bb7d4")
            ax.bar(x + 0.2, dist["synthetic"], 0.4, label="synthetic", color="#b5651d")
            ax.set_xticks(x, [str(v)[:12] for v in dist["values"]], rotation=30, ha="right", fontsize=7)
        else:
            edges = np.array(dist["edges"])
            width = np.diff(edges)
            ax.bar(edges[:-1], dist["real"], width, align="edge", alpha=0.6, label="real", color="#9bb7d4")
            ax.bar(edges[:-1], dist["synthetic"], width, align="edge", alpha=0.6, label="synthetic", color="#b5651d")
            if dist["kind"] == "date":
                ax.set_xlabel("days since 1970", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Each column: share of rows, real vs synthetic", fontsize=10)
    fig.tight_layout()
    return png(fig)


def rows_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """An HTML table of `rows` (dicts) with the given columns, every cell escaped."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}.meta{color:#555}img{max-width:100%;display:block;margin:1em 0}
table{border-collapse:collapse;width:100%;font-size:13px;margin:1em 0}
td,th{border:1px solid #ddd;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f3f3f3}.bad{color:#a00;font-weight:bold}.good{color:#070;font-weight:bold}"""


def render_report(run_dir: Path, embedder: Embedder | None = None) -> str:
    """The report's HTML for a finished run directory."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    recipe = manifest.recipe
    generated = {row["id"]: Record.from_json(row) for row in read_jsonl(run_dir / "generated.jsonl")}
    stages = json.loads((run_dir / "stages.json").read_text()) if (run_dir / "stages.json").exists() else {}
    final = [generated[i] for i in stages.get(STAGE_FINAL, []) if i in generated]
    labels = list(manifest.targets)
    kind = task_kind(recipe["task"])
    before = Counter(kind.bucket(r) for r in generated.values())
    after = Counter(kind.bucket(r) for r in final)
    rejected = read_jsonl(run_dir / "rejected.jsonl")
    passing = manifest.passing
    warning = (manifest.eval or {}).get("warning")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(recipe['name'])} report</title>"
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(recipe['name'])}</h1>",
        *([f"<p class='bad'><strong>Warning.</strong> {html.escape(warning)}</p>"] if warning else []),
        f"<p class='meta'>{manifest.rows} rows"
        + (f" ({manifest.own_text_rows} of them the user's own text, labelled by a model)" if manifest.own_text_rows else
           " written by a model") + f" · status {html.escape(manifest.status)} · "
        f"<span class='{'good' if passing else 'bad'}'>{'passing' if passing else 'eval gate NOT passed'}</span> · "
        f"recipe {manifest.recipe_hash} · generators: "
        + ", ".join(html.escape(f"{g['name']} ({', '.join(g.get('models_reported') or {}) or g['model']})") for g in manifest.generators)
        + "</p>",
        *([f"<p class='meta'>{html.escape(manifest.cost.sentence())}</p>"] if manifest.cost else []),
        "<h2>Label balance</h2>", f"<img alt='label balance' src='{balance_chart(before, after, labels)}'>",
        "<h2>Filter funnel</h2>", f"<img alt='funnel' src='{funnel_chart(manifest.funnel)}'>",
        rows_table([{"stage": s.stage, "in": s.rows_in, "kept": s.kept,
                      "dropped": ", ".join(f"{k}: {v}" for k, v in s.dropped.items()) or "-"} for s in manifest.funnel],
                    ["stage", "in", "kept", "dropped"]),
    ]
    for stage in manifest.funnel:
        histogram = (stage.stats or {}).get("histogram") if stage.stage == "judge" else None
        if histogram:
            parts += ["<h2>Judge scores</h2>", f"<img alt='judge scores' src='{judge_chart(histogram, stage.stats['threshold'])}'>"]
    text_rows = kind.Spec.row_shape == TEXT
    picture = cluster_chart(final, embedder or Embedder(), recipe.get("seed", 0), kind.bucket) if final and text_rows else None
    if picture:
        parts += ["<h2>Embedding clusters</h2>", f"<img alt='clusters' src='{picture}'>"]
    if manifest.kind_report:
        parts.append(f"<pre>{html.escape(kind.card_section(manifest.kind_report))}</pre>")
        distributions = (manifest.kind_report.get("fidelity") or {}).get("distributions")
        if distributions:
            parts += ["<h2>Columns, real vs synthetic</h2>", f"<img alt='columns' src='{column_charts(distributions)}'>"]
    if manifest.eval:
        ev = manifest.eval
        parts += ["<h2>Evaluation on real validation rows</h2>",
                  f"<p>{ev['validation_rows']} held-out real rows; {ev['real_train_rows']} real training rows; seeds {ev['seeds']}.</p>",
                  f"<img alt='eval' src='{eval_chart(ev)}'>"]
    kept_rows = [{**kind.fields(r), "generator": r.meta.get("generator", "")} for r in final[:SAMPLE]]
    parts += ["<h2>Sample of kept rows</h2>", rows_table(kept_rows, list(dict.fromkeys(k for row in kept_rows for k in row)))]
    sample_rejected = sorted(rejected, key=lambda r: (r["reason"], r["id"]))
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for row in sample_rejected:
        by_reason.setdefault(row["reason"], []).append(row)
    shown = [row for rows in by_reason.values() for row in rows[:3]][:SAMPLE * 2]
    parts += ["<h2>Sample of rejected rows</h2>",
              rows_table([{**r, "text": r["text"][:300]} for r in shown], ["stage", "reason", "label", "text", "detail"]),
              "</body></html>"]
    return "\n".join(parts)


def write_report(run_dir: Path, embedder: Embedder | None = None) -> Path:
    path = Path(run_dir) / "report.html"
    atomic_write_text(path, render_report(run_dir, embedder))
    return path
