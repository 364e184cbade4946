"""The dataset card (the run directory's README.md): Hub metadata plus a truthful account of the run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCardData

from factory.eval.names import CONDITIONS, SYNTHETIC_REAL
from factory.export.formats import LAYOUTS
from factory.records import DEFAULT_CONFIG, STAGE_PARSE
from factory.run.dataset import dataset_configs
from factory.run.decisions import REVIEW_STAGE
from factory.run.manifest import Manifest, load_manifest
from factory.run.store import atomic_write_text, read_jsonl
from factory.secrets import name_secret_variables, recipe_secret_variables, redact
from factory.tasks import task_kind

SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
HIGH_REFUSAL = 0.10


def size_category(rows: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if rows < limit), "n>1M")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _metadata(manifest: Manifest) -> DatasetCardData:
    """The card's Hub metadata, written by huggingface_hub (a dependency of datasets, so always installed)."""
    recipe = manifest.recipe
    hub = manifest.hub
    return DatasetCardData(
        license=hub.get("license", "other"),
        task_categories=list(task_kind(recipe["task"]).task_categories),
        language=hub.get("language", ["en"]),
        size_categories=[size_category(manifest.rows)],
        tags=["synthetic", "dataset-factory", recipe["task"]],
        pretty_name=recipe["name"],
    )


def limitations(manifest: Manifest, rejected: list[dict[str, Any]]) -> list[str]:
    """Known weaknesses, read off the run: refusals, unmet targets, thin clusters, the gate, small eval sets."""
    notes = []
    refusals = Counter(r.get("label") or r["meta"].get("bucket") for r in rejected
                       if r["stage"] == STAGE_PARSE and r["reason"] == "refusal")
    for label, count in sorted(refusals.items()):
        requests = state.requests if (state := manifest.progress.get(label)) else 0
        if requests and count / requests >= HIGH_REFUSAL:
            notes.append(f"The generator often refused to write `{label}` rows ({count} of {requests} requests, "
                         f"{count / requests:.0%}).")
    for label, state in manifest.progress.items():
        if not state.reached:
            notes.append(f"`{label}` has {state.kept} rows, short of its target of {state.target} (the request budget ran out).")
    for stage in manifest.funnel:
        for label, info in ((stage.stats or {}).get("labels", {}) or {}).items():
            thin = info.get("thin") if isinstance(info, dict) else None
            if thin:
                notes.append(f"`{label}` has {len(thin)} thin cluster(s) after rebalancing: some kinds of text are rare.")
    ev = manifest.eval
    if ev:
        if not ev["gate"]["passed"]:
            notes.append("The run did NOT pass its eval gate: " + "; ".join(
                f"{c['check']} required {c['required']}, measured {_fmt(c['measured'])}" for c in ev["gate"]["checks"] if not c["passed"]))
        if ev["validation_rows"] < 200:
            notes.append(f"Scores come from only {ev['validation_rows']} real validation rows: expect wide intervals.")
    else:
        notes.append("No eval was run: nothing here shows that training on this data helps.")
    if manifest.own_text_rows < manifest.rows:
        notes.append("Every row was written by a language model; it can carry the model's biases, factual errors and "
                     "label noise that the filters did not catch." if not manifest.own_text_rows else
                     "The written rows can carry the model's biases, factual errors and label noise that the filters did "
                     "not catch.")
    if manifest.own_text_rows:
        notes.append("The labels of the user's passages are a language model's: where its votes agreed they can still "
                     "all be wrong, and the passages carry whatever the user's documents hold.")
    return notes


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


EARNED = {"helped": "yes", "hurt": "no: it lowered the score", "within noise": "within noise"}


def _earned(stage: dict[str, Any]) -> str:
    """yes / no / within noise: whether the paired interval of the stage's change lies above zero, below it, or spans it."""
    return EARNED[stage["verdict"]] if stage.get("verdict") else ""


def _change(stage: dict[str, Any]) -> str:
    change = stage.get("change")
    if stage.get("delta") is None:
        return ""
    return f"{stage['delta']:+.3f}" + (f" [{change['ci_low']:+.3f}, {change['ci_high']:+.3f}]" if change else "")


def _eval_section(ev: dict[str, Any]) -> list[str]:
    out = ["## Evaluation on real validation rows", "",
           f"Classifiers trained on each condition and scored on {ev['validation_rows']} held-out **real** rows "
           f"({ev['real_train_rows']} real training rows, {ev['synthetic_rows']} synthetic rows, seeds {ev['seeds']}). "
           "Macro-F1, mean ± standard deviation over seeds:", ""]
    rows = []
    for name, scored in ev["evaluators"].items():
        cells = [f"{scored[c]['macro_f1']['mean']:.3f} ± {scored[c]['macro_f1']['std']:.3f}" if c in scored else "-"
                 for c in CONDITIONS]
        gain = scored.get("gain")
        cells.append(f"{gain['gain']:+.3f} [{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}]" if gain else "-")
        rows.append([name, *cells])
    out += [_table(["evaluator", "real only", "synthetic only", "synthetic + real", "gain (95% CI)"], rows), ""]
    if ev.get("ablation"):
        drawn = ("each seed's run trained on its own draw of three quarters of the real training rows, and the interval "
                 "is a paired bootstrap over the validation rows and those draws" if ev.get("ablation_draws") else
                 "every run trained on all the real training rows (too few to draw from), and the interval is a paired "
                 "bootstrap over the validation rows")
        out += [f"Filter ablation (linear evaluator, synthetic + real, macro-F1 after each stage; {drawn}). A stage earned "
                "its place in this run when the 95% interval of its change lies above zero, and hurt when it lies below; "
                "an interval that spans zero is within noise:", "",
                _table(["stage", "rows", "macro-F1", "change [95% CI]", "earned its place?"],
                       [[a["stage"], a["rows"], _fmt(a[SYNTHETIC_REAL]["mean"]) if a[SYNTHETIC_REAL] else "-",
                         _change(a), _earned(a)] for a in ev["ablation"]]), ""]
    gate = ev["gate"]
    if gate["checks"]:
        out += [f"Gate: **{'passed' if gate['passed'] else 'failed'}**", ""]
    return out


def _origin(manifest: Manifest) -> str:
    """Who wrote the rows: a model, or (for annotated rows) the user, with a model's labels."""
    own, rows = manifest.own_text_rows, manifest.rows
    if not own:
        return ("**This dataset is synthetic.** Every row was written by a language model from the recipe below, "
                "then filtered by [dataset-factory].")
    if own == rows:
        return ("**The labels of this dataset are synthetic.** Every row is a passage of the user's own documents, "
                "labelled by a language model (several votes per passage) and filtered by [dataset-factory].")
    return (f"**This dataset is partly synthetic.** {rows - own} rows were written by a language model from the recipe "
            f"below; {own} are passages of the user's own documents, labelled by a language model. All were filtered "
            "by [dataset-factory].")


def _choices_section(manifest: Manifest) -> list[str]:
    """The `auto` stages: on or off in this run, and the evidence (eval/choice.py)."""
    chosen = [(s.stage, s.stats["auto"]) for s in manifest.funnel if s.stats and "auto" in s.stats]
    if not chosen:
        return []
    rows = []
    for stage, c in chosen:
        change = c.get("change")
        evidence = (f"{c['without']:.3f} without, {c['with']:.3f} with: {change['gain']:+.3f} "
                    f"[{change['ci_low']:+.3f}, {change['ci_high']:+.3f}] on {c['scored_on']} real training rows"
                    if change else c.get("evidence", ""))
        rows.append([stage, "on" if c["on"] else "off", evidence])
    return ["## Stages chosen for this run", "",
            "These stages were judged in this build on the real training rows (never the validation rows): a linear "
            "probe trained on the rows without the stage and with it scored them (macro-F1, 95% paired bootstrap interval "
            "over those rows), and a stage stayed on unless it lowered the score. So few rows make a coarse judge: the "
            "interval says how coarse.", "",
            _table(["stage", "in this run", "evidence"], rows), ""]


def _review_section(manifest: Manifest) -> list[str]:
    """Said only when a person decided on rows: the card never claims a review that did not happen."""
    review = manifest.review
    if not review or not review.get("reviewed"):
        return []
    restored = next(((s.stats or {}).get("restored", 0) for s in manifest.funnel if s.stage == REVIEW_STAGE), 0)
    learned = [f"{s.stage} learned from {s.stats['reviewed_rows']} of them as from the real rows"
               for s in manifest.funnel if (s.stats or {}).get("reviewed_rows")]
    return ["## Human review", "",
            f"A person reviewed {review['reviewed']} of the generated rows with `factory review` and decided: "
            f"{review['accepted']} accepted ({restored} of the kept rows had been dropped by a filter), "
            f"{review['rejected']} rejected, {review['relabelled']} relabelled. The filters cannot override these "
            "decisions; the other rows were not looked at by a person."
            + (f" The rows a person kept taught the filters too: {'; '.join(learned)}." if learned else ""), ""]


def _weights_section(manifest: Manifest) -> list[str]:
    if not manifest.weights:
        return []
    stages = [s for s in manifest.funnel if s.stage == "weight" and s.stats]
    sources = ", ".join(dict.fromkeys(source for s in stages for source in s.stats.get("sources", [])))  # type: ignore[union-attr]
    how = (f"the product of {sources} (a `weight` stage)" if sources else
           "the share of an annotated row's votes for its label")
    return ["## Row weights", "",
            f"Each row's `weight` column (0 to 1) says how far to trust its label: {how}. The eval's classifiers "
            "trained with it; pass it to your own training as a per-row weight (a sample weight, or a weighted loss).", "",
            _table(["label", "rows", "mean", "10th percentile", "median", "90th percentile"],
                   [[label, w["rows"], w["mean"], w["p10"], w["p50"], w["p90"]] for label, w in manifest.weights.items()]), ""]


def _sources_section(manifest: Manifest) -> list[str]:
    if not manifest.corpus:
        return []
    grounding = manifest.recipe.get("grounding") or {}
    return ["## Sources", "",
            f"Each prompt was grounded in one passage of the user's documents (mode `{grounding.get('mode')}`, "
            f"passages chosen by `{grounding.get('select')}`); a row's `source_passage` column names its passage. "
            "Counts only: the documents themselves are not part of this dataset.", "",
            _table(["source", "documents", "passages", "passages behind the final rows", "duplicates dropped",
                    "passages dropped (held-out rows inside)", "documents not readable or empty"],
                   [[s.label, s.documents, s.passages, s.used, s.duplicates, s.validation_overlap, len(s.problems)]
                    for s in manifest.corpus]), ""]


def _judge_sections(manifest: Manifest) -> list[str]:
    """Each judge stage: its rubric (from the recipe), its score distribution and what the judging cost."""
    judges = [f for f in manifest.recipe.get("filters") or [] if f.get("type") == "judge"]
    stages = [s for s in manifest.funnel if s.stage == "judge" and s.stats]
    out: list[str] = []
    for params, stage in zip(judges, stages):
        stats = stage.stats or {}
        judged = stats.get("judged", {})
        cost = stats.get("requests") or {}
        out += ["## Judge", "",
                f"Every pair reaching the `judge` stage was scored 1-5 on each criterion below by the generator "
                f"`{params.get('generator') or manifest.generators[0]['name']}`, with a one-sentence rationale; the row's "
                f"score is the {stats.get('aggregate')} of its criteria, and rows below {stats.get('threshold')} were dropped "
                f"(`low_judge_score`, the weakest criterion's rationale as the detail). The scores are the `judge_*` columns.", "",
                _table(["criterion", "what a 5 means", "mean score"],
                       [[name, meaning, stats.get("criteria_mean", {}).get(name, "-")] for name, meaning in params["rubric"].items()]), "",
                "Score distribution (rows judged, passed and dropped):", "",
                _table(["score", "rows"], [[score, rows] for score, rows in (stats.get("histogram") or {}).items()]), "",
                f"{judged.get('passed', 0)} passed, {judged.get('low_judge_score', 0)} dropped for a low score, "
                f"{judged.get('judge_failed', 0)} dropped because the verdict failed or was unreadable; "
                f"{cost.get('requests', 0)} judge requests ({cost.get('cached', 0)} from the cache), "
                f"{cost.get('prompt_tokens', 0)} / {cost.get('completion_tokens', 0)} prompt / completion tokens.", ""]
    return out


def _finetune_sections(manifest: Manifest) -> list[str]:
    out: list[str] = []
    splits = manifest.splits
    if splits:
        out += ["## Splits", "",
                f"Held-out splits, stratified by label. Near-duplicates (character 3-gram Jaccard at least "
                f"{splits['group_threshold']}) and rows from the same passage form groups, and a group never straddles "
                f"two splits ({splits['groups']} groups; the largest has {splits['largest_group']} rows).", "",
                _table(["split", "rows", "per label"],
                       [[name, rows, ", ".join(f"{k}: {v}" for k, v in splits["per_bucket"][name].items())]
                        for name, rows in splits["rows"].items()]), ""]
    exports = manifest.exports
    if exports:
        layouts = {**LAYOUTS, **task_kind(manifest.recipe["task"]).export_layouts}
        rows = []
        for fmt, written in exports["formats"].items():
            files = ", ".join(f"`{path}` ({written['rows'][split]})" for split, path in written["files"].items())
            notes = [f"left out: {k} {v}" for k, v in (written.get("left_out") or {}).items()] + written.get("problems", [])
            rows.append([fmt, layouts[fmt], files, "; ".join(notes) or "-"])
        system = exports.get("system_prompt")
        out += ["## Fine-tuning files", "",
                "The run directory also holds the dataset in these layouts (JSON lines; "
                "`load_dataset(\"json\", data_files=...)` reads each)"
                + (f", every chat example opening with the system prompt: \"{system}\"" if system else "") + ".", "",
                _table(["format", "layout", "files (rows)", "notes"], rows), ""]
    return out


def public_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe as the card shows it: local paths become "<local>" (a user's folder and file names
    are not for publishing); Hub and package paths are public and stay."""
    def public(path: str) -> str:
        return path if path.startswith(("hf:", "package:")) else "<local>"

    shown = dict(recipe)
    if shown.get("sources"):
        shown["sources"] = [{**s, "path": public(s["path"])} for s in shown["sources"]]
    if isinstance(shown.get("real_data"), dict):
        shown["real_data"] = {**shown["real_data"], "path": public(shown["real_data"]["path"])}
    return shown


def render_card(run_dir: Path) -> str:
    """The card's text for a finished run directory."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    recipe = manifest.recipe
    rejected = read_jsonl(Path(run_dir) / "rejected.jsonl")
    hub = recipe.get("hub") or {}
    repo = hub.get("repo_id", f"<owner>/{recipe['name']}")
    warning = (manifest.eval or {}).get("warning")
    lines = ["---", _metadata(manifest).to_yaml(), "---", "",
             f"# {recipe['name']}", "",
             *([f"> **Warning.** {warning}", ""] if warning else []),
             f"{_origin(manifest)} It has {manifest.rows} rows "
             f"({recipe['task']}; run status: {manifest.status}"
             f"{'' if manifest.passing else ', eval gate NOT passed'}).", "",
             "## Generators", "",
             _table(["name", "backend", "model requested", "model reported by the generator", "temperature", "top_p",
                     "max_tokens", "requests", "tokens (prompt / completion)"],
                    [[g["name"], g["backend"], g["model"], ", ".join(g.get("models_reported") or {}) or "-",
                      g.get("temperature"), g.get("top_p"), g.get("max_tokens"), g.get("requests"),
                      f"{g.get('prompt_tokens', 0)} / {g.get('completion_tokens', 0)}"] for g in manifest.generators]),
             "", *([manifest.cost.sentence(), ""] if manifest.cost else [])]
    counts = {label: state.kept for label, state in manifest.progress.items()}
    lines += ["## Rows per label", "", _table(["label", "rows", "target"],
                                              [[k, v, manifest.targets[k]] for k, v in counts.items()]), ""]
    lines += ["## Filter funnel", "", "Every generated reply passes these stages in order; each drop has a reason "
              "(the rejected rows are kept in `rejected.jsonl`"
              + (" and the `rejected` config" if hub.get("include_rejected") else "") + ").", "",
              _table(["stage", "in", "kept", "dropped (reason: rows)"],
                     [[s.stage, s.rows_in, s.kept, ", ".join(f"{k}: {v}" for k, v in s.dropped.items()) or "-"]
                      for s in manifest.funnel]), ""]
    lines += _sources_section(manifest)
    lines += _choices_section(manifest)
    lines += _weights_section(manifest)
    lines += _review_section(manifest)
    lines += _judge_sections(manifest)
    lines += _finetune_sections(manifest)
    if manifest.kind_report:  # what the kind measured (a table: its checks and fidelity), in the kind's words
        lines += [task_kind(recipe["task"]).card_section(manifest.kind_report)]
    if manifest.eval:
        lines += _eval_section(manifest.eval)
    lines += ["## Known limitations", "", *[f"- {note}" for note in limitations(manifest, rejected)], ""]
    configs = dataset_configs(run_dir)
    if configs == [DEFAULT_CONFIG] and manifest.splits:
        loads = [f'ds = load_dataset("{repo}")  # splits: {", ".join(manifest.splits["rows"])}']
        local = '`datasets.load_from_disk("<run>/dataset")` (a DatasetDict)'
    elif configs == [DEFAULT_CONFIG]:
        loads, local = [f'ds = load_dataset("{repo}", split="train")'], '`datasets.load_from_disk("<run>/dataset")`'
    else:  # one config per table
        loads = [f'{name} = load_dataset("{repo}", "{name}", split="train")' for name in configs]
        local = '`datasets.load_from_disk("<run>/dataset/<table>")`'
    lines += ["## How to load", "", "```python", "from datasets import load_dataset", "", *loads, "```", "",
              f"From a local run directory: {local}.", ""]
    lines += ["## Recipe", "", f"Recipe hash `{manifest.recipe_hash}`; package versions: "
              + ", ".join(f"{k} {v}" for k, v in manifest.versions.items()) + ".", "",
              "```yaml", yaml.safe_dump(public_recipe(recipe), sort_keys=False, allow_unicode=True).strip(), "```", "",
              "[dataset-factory]: https://pypi.org/project/dataset-factory/", ""]
    # A safety net: the values of the variables the recipe names never reach the card.
    name_secret_variables(recipe_secret_variables(recipe))
    return redact("\n".join(lines))


def write_card(run_dir: Path) -> Path:
    """Write (or rewrite) `run_dir/README.md` atomically."""
    path = Path(run_dir) / "README.md"
    atomic_write_text(path, render_card(run_dir))
    return path
