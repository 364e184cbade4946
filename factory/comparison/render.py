"""How a comparison is shown: the side-by-side table (terminal and HTML) and compare.html with charts."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from factory.eval.names import SYNTHETIC, SYNTHETIC_REAL
from factory.report.html import STYLE, png, pyplot, rows_table
from factory.run.store import atomic_write_text

Metrics = dict[str, Any]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _score(scores: Metrics | None, condition: str) -> str:
    cell = (scores or {}).get(condition)
    return "-" if not cell else f"{cell['mean']:.3f}±{cell['std']:.3f}"


def table_rows(data: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(metric, one cell per generator) for every line of the comparison table."""
    names = data["generators"]
    metrics = [data["metrics"][n] for n in names]
    evaluator = data.get("evaluator")

    def row(label: str, cell: Callable[[Metrics], str]) -> tuple[str, list[str]]:
        return label, [cell(m) for m in metrics]

    lines = [
        row("model", lambda m: ", ".join(m["models_reported"]) or m["model"]),
        row("requests", lambda m: str(m["requests"])),
        row("parsed rows", lambda m: str(m["parsed"])),
        row("kept rows", lambda m: str(m["kept"])),
        row("exact-duplicate rate (parsed)", lambda m: _pct(m["duplicates"]["exact_rate"])),
        row("near-duplicate rate (parsed)", lambda m: _pct(m["duplicates"]["near_rate"])),
        row("refusal rate (requests)", lambda m: _pct(m["failures"]["refusal_rate"])),
        row("parse-failure rate (requests)", lambda m: _pct(m["failures"]["parse_failure_rate"])),
        row("copied an example / the prompt (requests)", lambda m: _pct(m["failures"]["copy_rate"])),
        row("distinct-1 / distinct-2 (kept)",
            lambda m: f"{_num(m['diversity']['distinct_1'], 2)} / {_num(m['diversity']['distinct_2'], 2)}"),
        row("mean embedding distance (kept)", lambda m: _num(m["diversity"]["mean_distance"])),
        row(f"clusters holding 90% (k={data['clusters']['k']})", lambda m: str(m["diversity"]["clusters_90"] or "-")),
        row("label fidelity kept / parsed",
            lambda m: f"{_pct(m['fidelity']['kept'])} / {_pct(m['fidelity']['parsed'])}"),
    ]
    stages = [s["stage"] for s in metrics[0]["acceptance"]["stages"]] if metrics else []
    for i, stage in enumerate(stages):
        lines.append(row(f"accepted by {stage}", lambda m, i=i: _pct(m["acceptance"]["stages"][i]["rate"])
                         if i < len(m["acceptance"]["stages"]) else "-"))
    lines.append(row("accepted overall (kept / requests)", lambda m: _pct(m["acceptance"]["overall"])))
    if evaluator:
        lines += [
            row(f"{evaluator} real-only macro-F1", lambda m: _score(m["eval"], "real")),
            row(f"{evaluator} synthetic macro-F1", lambda m: _score(m["eval"], SYNTHETIC)),
            row(f"{evaluator} synthetic+real macro-F1", lambda m: _score(m["eval"], SYNTHETIC_REAL)),
        ]
    lines += [
        row("tokens (prompt + completion)", lambda m: f"{m['usage']['tokens']:,}"),
        row("tokens per kept row", lambda m: _num(m["usage"]["tokens_per_kept_row"], 0)),
        row("generation seconds (summed)", lambda m: _num(m["usage"]["request_s"], 1)),
        row("cost (USD)", lambda m: _usd(m["usage"]["cost"])),
        row("cost per kept row (USD)", lambda m: _usd(m["usage"].get("cost_per_kept_row"))),
    ]
    if evaluator:
        lines.append(row("synthetic+real F1 per 1k tokens", lambda m: _num(m["usage"]["score_per_1k_tokens"], 4)))
    lines.append(row("kept rows per 1k tokens", lambda m: _num(m["usage"]["kept_per_1k_tokens"], 2)))
    return lines


def _usd(value: float | None) -> str:
    return "unknown (no price)" if value is None else f"{value:.6f}"


def format_table(data: dict[str, Any]) -> str:
    """The comparison as fixed-width text: one column per generator, then the verdict line."""
    header = ("metric", data["generators"])
    lines = [header, *table_rows(data)]
    first = max(len(label) for label, _ in lines)
    widths = [max(len(cells[i]) for _, cells in lines) for i in range(len(data["generators"]))]
    out = [f"compare {data['recipe']}: {data['requests_per_label']} requests per label, same prompts for every generator"]
    for label, cells in lines:
        out.append("  ".join([label.ljust(first), *(c.ljust(w) for c, w in zip(cells, widths))]).rstrip())
    pairs = data.get("pairs")
    if pairs:
        out.append("cross-label collisions (same normalised text, or cosine >= 0.95, with a different label):")
        for c in pairs["collisions"]:
            out.append(f"  {c['a']} vs {c['b']}: {_pct(c['rate'])} of {c['rows']} rows")
        out.append(f"side by side ({min(3, len(pairs['examples']))} of {pairs['prompts']} prompts; all in compare.html):")
        for entry in pairs["examples"][:3]:
            out.append(f"  [{entry['label']} #{entry['index']}] " + ", ".join(f"{k}={v}" for k, v in entry["axes"].items()))
            for name, cell in entry["rows"].items():
                out.append(f"    {name}: {_cell_text(cell)[:110]}")
    out.append(data["verdict"]["text"])
    return "\n".join(out)


def _cell_text(cell: dict[str, Any]) -> str:
    text = cell["text"].replace("\n", " ")
    if cell.get("rejected"):
        return f"[{cell['rejected']}] {text}"
    return text + ("" if cell["kept"] else " [filtered]")


# -- charts -----------------------------------------------------------------------------------------


def _grouped_bars(ax: Any, groups: list[str], series: dict[str, list[float]], errors: dict[str, list[float]] | None = None) -> None:
    """One group of bars per entry of `groups`, one bar per series."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar(x + offset, values, width, label=name, yerr=(errors or {}).get(name), capsize=3 if errors else 0)
    ax.set_xticks(x, groups, rotation=15, ha="right")


def scores_chart(data: dict[str, Any]) -> str | None:
    """synthetic and synthetic+real macro-F1 per generator, with the spread over seeds, and real-only as a line."""
    names = [n for n in data["generators"] if data["metrics"][n]["eval"]]
    if not names:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 2), 3.4))
    evals = [data["metrics"][n]["eval"] for n in names]
    conditions = (SYNTHETIC, SYNTHETIC_REAL)
    _grouped_bars(ax, names, {c: [e.get(c, {}).get("mean", 0) for e in evals] for c in conditions},
                  {c: [e.get(c, {}).get("std", 0) for e in evals] for c in conditions})
    real = evals[0].get("real")
    if real:
        ax.axhline(real["mean"], color="grey", linestyle="--", label="real only")
    ax.set_ylim(0, 1)
    ax.set_ylabel("macro-F1, real validation rows")
    ax.set_title(f"{data['evaluator']} evaluator: mean ± std over seeds")
    ax.legend(fontsize=8)
    return png(fig)


def rates_chart(data: dict[str, Any]) -> str:
    """Duplicate, refusal and parse-failure rates per generator."""
    names = data["generators"]
    m = [data["metrics"][n] for n in names]
    series = {
        "exact duplicates (of parsed)": [x["duplicates"]["exact_rate"] or 0 for x in m],
        "near duplicates (of parsed)": [x["duplicates"]["near_rate"] or 0 for x in m],
        "refusals (of requests)": [x["failures"]["refusal_rate"] or 0 for x in m],
        "parse failures (of requests)": [x["failures"]["parse_failure_rate"] or 0 for x in m],
    }
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(names) + 2), 3.4))
    _grouped_bars(ax, names, series)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share")
    ax.set_title("Duplicates before filtering, refusals and parse failures")
    ax.legend(fontsize=8)
    return png(fig)


def diversity_chart(data: dict[str, Any]) -> str:
    """distinct-n, mean embedding distance and label fidelity (shares), and the clusters holding 90% (counts)."""
    names = data["generators"]
    m = [data["metrics"][n] for n in names]
    series = {
        "distinct-1": [x["diversity"]["distinct_1"] or 0 for x in m],
        "distinct-2": [x["diversity"]["distinct_2"] or 0 for x in m],
        "mean embedding distance": [x["diversity"]["mean_distance"] or 0 for x in m],
        "label fidelity (kept)": [x["fidelity"]["kept"] or 0 for x in m],
    }
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(max(9, 2.4 * len(names) + 4), 3.4), gridspec_kw={"width_ratios": [3, 1.4]})
    _grouped_bars(axes[0], names, series)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("Diversity and label fidelity of the kept rows")
    axes[0].legend(fontsize=8)
    axes[1].bar(np.arange(len(names)), [x["diversity"]["clusters_90"] or 0 for x in m], color="#2d6a9f")
    axes[1].set_xticks(np.arange(len(names)), names, rotation=15, ha="right")
    axes[1].set_title(f"Clusters holding 90% (of k={data['clusters']['k']})")
    return png(fig)


def acceptance_chart(data: dict[str, Any]) -> str:
    """The share of rows each stage passes on, per generator."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name in data["generators"]:
        stages = data["metrics"][name]["acceptance"]["stages"]
        ax.plot([s["stage"] for s in stages], [s["rate"] if s["rate"] is not None else np.nan for s in stages],
                marker="o", label=name)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("kept / in")
    ax.set_title("Acceptance through each stage")
    ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=8)
    return png(fig)


# -- the page ---------------------------------------------------------------------------------------


def _pairs_html(pairs: dict[str, Any], names: list[str]) -> list[str]:
    collisions = rows_table([{"generators": f"{c['a']} vs {c['b']}", "rows": c["rows"], "colliding": c["colliding"],
                              "rate": _pct(c["rate"])} for c in pairs["collisions"]],
                            ["generators", "rows", "colliding", "rate"])
    examples = [{"label": e["label"], "index": e["index"], "axes": "; ".join(f"{k}: {v}" for k, v in e["axes"].items()),
                 **{n: _cell_text(e["rows"][n]) if n in e["rows"] else "" for n in names}} for e in pairs["examples"]]
    return ["<h2>Same prompt, side by side</h2>",
            ("<p>Cross-label collisions: the share of both generators' parsed rows that match a row of the other "
             "generator with a different label (same normalised text, or embedding cosine ≥ 0.95).</p>"), collisions,
            (f"<p>The first {len(examples)} of {pairs['prompts']} prompts; [reason] marks a reply rejected at parse "
             "time, [filtered] a row a filter dropped.</p>"),
            rows_table(examples, ["label", "index", "axes", *names])]


def render_html(data: dict[str, Any]) -> str:
    """compare.html: the verdict, the table, the charts and (with pairs) the rows side by side; one file."""
    names = data["generators"]
    title = html.escape(f"{data['recipe']}: generators compared")
    table = rows_table([{"metric": label, **dict(zip(names, cells))} for label, cells in table_rows(data)], ["metric", *names])
    links = ", ".join(f"<a href='{html.escape(Path(data['metrics'][n]['run_dir']).name)}/report.html'>{html.escape(n)}</a>"
                      for n in names)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head><body>",
        f"<h1>{title}</h1>",
        (f"<p class='meta'>recipe {html.escape(data['recipe'])} ({data['recipe_hash']}) · {data['requests_per_label']} "
         f"requests per label, the same prompts for every generator · run reports: {links}</p>"),
        f"<p><b>{html.escape(data['verdict']['text'])}</b></p>",
        "<h2>Side by side</h2>", table,
    ]
    scores = scores_chart(data)
    if scores:
        parts += ["<h2>Scores on the real validation rows</h2>", f"<img alt='scores' src='{scores}'>"]
    parts += ["<h2>Duplicates and refusals</h2>", f"<img alt='rates' src='{rates_chart(data)}'>",
              "<h2>Diversity</h2>", f"<img alt='diversity' src='{diversity_chart(data)}'>",
              "<h2>Acceptance</h2>", f"<img alt='acceptance' src='{acceptance_chart(data)}'>"]
    if data.get("pairs"):
        parts += _pairs_html(data["pairs"], names)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(out_dir: Path, data: dict[str, Any]) -> Path:
    path = Path(out_dir) / "compare.html"
    atomic_write_text(path, render_html(data))
    return path
