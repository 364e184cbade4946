"""The `factory` command: build | validate | eval | export | push | compare | models | review."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from factory import interrupts
from factory.errors import FactoryError, RecipeError
from factory.eval.names import CONDITIONS, SYNTHETIC_REAL
from factory.secrets import RedactingFilter, check_env_name, redact

if TYPE_CHECKING:
    from factory.run.manifest import Manifest
    from factory.spec import RecipeBase

log = logging.getLogger("factory")

EXIT_ERROR, EXIT_INCOMPLETE, EXIT_GATE_FAILED, EXIT_INTERRUPTED = 1, 3, 4, 130


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="factory", description="Manufacture fine-tuning datasets with language models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="generate, filter and write a dataset from a recipe")
    build.add_argument("recipe", type=Path)
    build.add_argument("--out", type=Path, help="run directory (default: runs/<recipe name>)")
    build.add_argument("--per-label", type=_positive, help="override the rows wanted per label (kinds sized per label)")
    build.add_argument("--count", type=_positive, help="override the rows wanted (kinds sized by a count; a table's rows)")
    build.add_argument("--seed", type=int, help="override the recipe's seed (a table program runs again with it, "
                                                "uncalled model; real_data.seed pins the split)")
    build.add_argument("--max-requests", type=_positive, help="override the request budget")
    build.add_argument("--budget", type=_usd, metavar="USD", help="override the money budget (budget.usd): most dollars "
                       "the run may spend on paid APIs")
    build.add_argument("--estimate", "--dry-run", action="store_true", help="print what the build would send and "
                       "cost, per generator, and send nothing")
    build.add_argument("--no-wait", action="store_true", help="mode: batch generators: submit the Batch API jobs and "
                       "stop; run the command again to collect them")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument("--no-push", action="store_true", help="skip the push that the recipe's hub: section asks for")
    build.add_argument("--force", action="store_true", help="push even when the eval gate fails; build even into a "
                       "folder that holds another recipe's run, replacing that run (its cached replies stay)")
    build.add_argument("--engine", choices=["local", "ray"], help="where the build runs: its requests, large filter "
                       "passes and embeddings (default: the recipe's engine, else local)")
    build.add_argument("--address", help="--engine ray: the cluster, auto or ray://host:port (default: start one here)")
    build.add_argument("--workers", type=_positive, help="--engine ray: actors per generator")

    compare = sub.add_parser("compare", help="build a recipe once per generator on the same prompts; compare the data")
    compare.add_argument("recipe", type=Path)
    compare.add_argument("--generators", help="comma-separated generator names (default: every generator of the recipe)")
    compare.add_argument("--requests-per-label", type=_positive,
                         help="requests per label for every generator (default: ceil(1.05 x generate.per_label))")
    compare.add_argument("--out", type=Path, help="folder for the runs and compare.json/html (default: runs/<recipe name>-compare)")
    compare.add_argument("--pair", action="store_true", help="also show each prompt's rows side by side and cross-label collisions")
    compare.add_argument("--no-progress", action="store_true", help="no progress bars")

    validate = sub.add_parser("validate", help="check a recipe without calling any model; print it resolved")
    validate.add_argument("recipe", type=Path, nargs="?")
    validate.add_argument("--schema", action="store_true", help="print the JSON schema of recipe files instead")

    evaluate = sub.add_parser("eval", help="re-score a finished run on the real validation rows")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--evaluators", help="comma-separated: linear,setfit,encoder (default: the recipe's)")
    evaluate.add_argument("--seeds", help="comma-separated integers (default: the recipe's)")

    sub.add_parser("models", help="list the packaged local models and whether they are installed")

    export = sub.add_parser("export", help="write a finished run in fine-tuning layouts (run/export/<format>/<split>.jsonl)")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", help="comma-separated layouts the run's kind fills, e.g. columns,messages,openai,alpaca,sharegpt "
                                         "(default: the recipe's export.formats)")
    export.add_argument("--system-prompt", help="a system message at the start of every chat example")
    export.add_argument("--instruction", help="classification as chat: the instruction before each text")
    export.add_argument("--openai-max-tokens", type=_positive, help="OpenAI's per-example token limit (default 65536)")

    review = sub.add_parser("review", help="look at every row of a run in a local page and decide on them")
    review.add_argument("run_dir", type=Path)
    review.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    review.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    review.add_argument("--who", help="the name the decisions are recorded with (default: the login name)")
    review.add_argument("--no-open", action="store_true", help="print the address but open no browser")
    review.add_argument("--no-map", action="store_true", help="skip the 2-D embedding map (large runs)")

    push = sub.add_parser("push", help="publish a finished run to the Hugging Face Hub")
    push.add_argument("run_dir", type=Path)
    push.add_argument("--repo", help="dataset repo id, owner/name (default: the recipe's hub.repo_id)")
    push.add_argument("--private", action="store_true", help="create the repo private (or the recipe's hub.private)")
    push.add_argument("--include-rejected", action="store_true", help="also push the rejected rows as the 'rejected' config")
    push.add_argument("--force", action="store_true", help="push even though the run failed its eval gate")
    push.add_argument("--token-env", type=_env_name,
                      help="environment variable holding the Hub token (default: the recipe's hub.token_env, else HF_TOKEN)")
    return parser


def _usd(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError("must be a positive number of US dollars")
    return number


def _env_name(value: str) -> str:
    """argparse type for flags that name an environment variable (a pasted token is refused, not echoed)."""
    try:
        return check_env_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _load(args: argparse.Namespace) -> RecipeBase:
    from factory.recipe_file import load_recipe  # not at the top: `factory --help` validates nothing

    spec = load_recipe(args.recipe)
    try:
        for flag, rows in (("--per-label", getattr(args, "per_label", None)), ("--count", getattr(args, "count", None))):
            if rows is not None:
                spec.resize(flag, rows)
    except ValueError as exc:
        raise RecipeError(str(args.recipe), [str(exc)]) from None
    if getattr(args, "max_requests", None):
        spec.generate.max_requests = args.max_requests
    if getattr(args, "budget", None):
        from factory.spec import BudgetSpec

        spec.budget = BudgetSpec(usd=args.budget)
    if getattr(args, "seed", None) is not None:
        spec.seed = args.seed
    for flag in ("engine", "address", "workers"):
        if getattr(args, flag, None) is not None:
            setattr(spec.engine, "name" if flag == "engine" else flag, getattr(args, flag))
    if problem := spec.budget_problem():  # the flags above may have made the recipe's budget unenforceable
        raise RecipeError(str(args.recipe), [problem if not getattr(args, "budget", None) else
                                             problem.replace("budget.usd", "--budget", 1)])
    return spec


def print_engine(manifest: Manifest) -> None:
    """--engine ray: what each generator worker did and which steps ran on Ray Data."""
    for generator in manifest.generators:
        for worker in generator.get("worker_stats") or []:
            busy = worker["busy_s"]
            print(f"  worker {worker['name']} (pid {worker['pid']}): {worker['requests']} requests, "
                  f"{busy:.1f} s busy" + (f", {worker['requests'] / busy:.1f} requests/s" if busy else ""))
    engine = manifest.engine or {}
    if engine.get("dashboard"):
        print(f"  ray dashboard: {engine['dashboard']}")
    for step, done in (engine.get("steps") or {}).items():
        print(f"  ray data: {step}: {done['rows']:.0f} rows in {done['calls']:.0f} passes, {done['seconds']:.1f} s")
    if engine.get("on_driver"):
        print(f"  in this process (they need every row at once): {', '.join(engine['on_driver'])}")


def cmd_review(args: argparse.Namespace) -> int:
    from factory.review.server import ReviewServer

    server = ReviewServer(args.run_dir, host=args.host, port=args.port, who=args.who, with_map=not args.no_map)
    print(f"reviewing {args.run_dir} ({len(server.data['rows'])} rows) at {server.url}")
    print("decisions go to decisions.jsonl; every later build, eval, export and push applies them. Ctrl+C stops "
          "the page.", flush=True)
    if not args.no_open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        interrupts.handled()  # the way to stop the page, not an interrupted job
        print("review stopped; the decisions are saved", file=sys.stderr)
    finally:
        server.shutdown()
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from factory.api import build

    spec = _load(args)
    if args.estimate:
        from factory.builder.estimate import estimate, format_estimate

        print(format_estimate(estimate(spec, args.out)))
        return 0
    result = build(spec, args.out, progress=not args.no_progress, replace=args.force, no_wait=args.no_wait)
    manifest = result.manifest
    if result.replaced:
        print(f"--force: replaced {result.replaced}", file=sys.stderr)
    print_warning(manifest.eval)  # first: a user who reads one line must read this one
    print(f"run directory: {result.run_dir}")
    if manifest.cache and (manifest.cache["reused"] or manifest.cache["unused"]):
        print(f"  cache: {manifest.cache['reused']} replies reused" + (
            f", {manifest.cache['unused']} cached replies not used by this recipe (an edit changed their prompts)"
            if manifest.cache["unused"] else ""))
    for bucket, state in manifest.progress.items():
        print(f"  {bucket}: {state.kept}/{state.target}")
    if manifest.cost is not None and any("price" in g for g in manifest.generators):  # a server that may charge
        print(f"  {manifest.cost.sentence()}")
    print_engine(manifest)
    for stage in manifest.funnel:
        dropped = ", ".join(f"{k}={v}" for k, v in stage.dropped.items()) or "-"
        print(f"  {stage.stage:<12} in={stage.rows_in:<6} kept={stage.kept:<6} dropped: {dropped}")
    if manifest.eval is not None:
        print_eval(manifest.eval)
    if manifest.exports is not None:
        print_exports(manifest.exports)
    if not result.complete:
        print(f"stopped before every target was reached: {manifest.stopped}", file=sys.stderr)
        if result.kept_previous:
            from factory.run.manifest import load_manifest

            previous = load_manifest(result.run_dir)
            print(f"the complete dataset of the previous build ({previous.rows} rows, {previous.timings.started}) stays in "
                  f"{result.run_dir / 'dataset'}; this build's {manifest.rows} rows are in {result.output_dir / 'dataset'}",
                  file=sys.stderr)
        else:
            print(f"everything made so far is written ({manifest.rows} rows); run the same command again to resume",
                  file=sys.stderr)
        return EXIT_INCOMPLETE
    if spec.hub is not None and not args.no_push:
        if result.passing or args.force:
            from factory.publish.hub import push_run

            _print_push(result.run_dir, push_run(result.run_dir, spec.hub.repo_id, force=args.force))
        else:
            print(f"not pushing to {spec.hub.repo_id}: the eval gate failed (use --force to push anyway)", file=sys.stderr)
    if not result.passing:
        print("the eval gate failed: the run is written but marked as not passing (a push needs --force)", file=sys.stderr)
        return EXIT_GATE_FAILED
    return 0


def print_warning(results: dict | None) -> None:
    """The eval's warning that the rows hurt (eval/runner.py: hurt_warning), on stderr, when there is one."""
    if results and results.get("warning"):
        print(f"WARNING: {results['warning']}", file=sys.stderr)


def print_eval(results: dict) -> None:
    """The eval table: macro-F1 mean ± std per evaluator and condition, the gain, and the ablation."""
    print(f"eval on {results['validation_rows']} real validation rows, seeds {results['seeds']} (macro-F1):")
    for name, scored in results["evaluators"].items():
        cells = [f"{c}={scored[c]['macro_f1']['mean']:.3f}±{scored[c]['macro_f1']['std']:.3f}"
                 for c in CONDITIONS if c in scored]
        gain = scored.get("gain")
        if gain:
            cells.append(f"gain={gain['gain']:+.3f} [{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}]")
        print(f"  {name:<8} " + "  ".join(cells))
    for entry in results.get("ablation", []):
        sr = entry[SYNTHETIC_REAL]
        delta = f"{entry['delta']:+.3f}" if entry["delta"] is not None else ""
        change = entry.get("change")
        judged = f" [{change['ci_low']:+.3f}, {change['ci_high']:+.3f}] {entry['verdict']}" if change else ""
        print(f"  after {entry['stage']:<14} rows={entry['rows']:<6} synthetic+real={sr['mean']:.3f} {delta}{judged}" if sr
              else f"  after {entry['stage']:<14} rows=0")
    gate = results["gate"]
    for check in gate["checks"]:
        print(f"  gate {check['check']}: required {check['required']}, measured {check['measured']}: "
              f"{'pass' if check['passed'] else 'FAIL'}")


def cmd_compare(args: argparse.Namespace) -> int:
    from factory.comparison import compare
    from factory.comparison.render import format_table

    spec = _load(args)
    names = [n.strip() for n in args.generators.split(",") if n.strip()] if args.generators else None
    result = compare(spec, args.out, generators=names, requests_per_label=args.requests_per_label, pair=args.pair,
                     progress=not args.no_progress)
    print(format_table(result.data))
    print(f"written: {result.out_dir / 'compare.json'}, {result.out_dir / 'compare.html'}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    if args.schema:
        from factory.recipe_file import recipe_schema

        print(json.dumps(recipe_schema(), indent=2))
        return 0
    if args.recipe is None:
        raise FactoryError("validate needs a recipe path (or --schema)")
    spec = _load(args)
    print(yaml.safe_dump(spec.resolved(), sort_keys=False, allow_unicode=True), end="")
    print(f"# ok: {args.recipe} (hash {spec.hash()})", file=sys.stderr)
    if spec.needs_sandbox:
        from factory.sandbox import SandboxUnavailable, check

        try:
            check()
        except SandboxUnavailable as exc:
            print(f"warning: {exc}; a build of this recipe would stop before its first request", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from factory.eval.rescore import rescore
    from factory.report import write_documents

    evaluators = args.evaluators.split(",") if args.evaluators else None
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    _apply_pending_decisions(args.run_dir, run_eval=False)  # scored next, with this command's options
    results = rescore(args.run_dir, evaluators=evaluators, seeds=seeds)
    write_documents(args.run_dir)
    print_warning(results)
    print_eval(results)
    return 0 if results["gate"]["passed"] else EXIT_GATE_FAILED


def _apply_pending_decisions(run_dir: Path, *, run_eval: bool = True) -> None:
    """Eval, export and push honour every review decision: those the last build did not apply are applied first,
    by building the run again from its cached replies alone (api.apply_decisions: nothing is sent)."""
    from factory.api import apply_decisions
    from factory.run.decisions import unapplied
    from factory.run.manifest import load_manifest

    pending = unapplied(run_dir, (load_manifest(run_dir).review or {}).get("decisions", 0))
    if not pending:
        return
    print(f"applying {pending} review decision(s) made since the last build, from the cached replies (nothing is "
          "sent)", file=sys.stderr)
    manifest = apply_decisions(run_dir, run_eval=run_eval).manifest
    print(f"  {manifest.rows} rows; " + ", ".join(f"{b}: {s.kept}/{s.target}" for b, s in manifest.progress.items()),
          file=sys.stderr)
    if not manifest.complete:
        print(f"warning: {manifest.stopped}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    from factory.export import export_finished
    from factory.report.card import write_card

    _apply_pending_decisions(args.run_dir)
    formats = [f.strip() for f in args.format.split(",") if f.strip()] if args.format else None
    exports = export_finished(args.run_dir, formats=formats, system_prompt=args.system_prompt,
                              instruction=args.instruction, openai_max_tokens=args.openai_max_tokens)
    write_card(args.run_dir)  # the card lists the files
    problems = print_exports(exports)
    return EXIT_ERROR if problems else 0


def print_exports(exports: dict) -> int:
    """One line per file written; problems (an OpenAI file below its minimum) on stderr. Returns their count."""
    problems = 0
    for fmt, written in exports["formats"].items():
        for split, path in written["files"].items():
            print(f"  {path}: {written['rows'][split]} rows")
        if written.get("left_out"):
            print(f"  {fmt}: left out (rule: examples) " + ", ".join(f"{k}: {v}" for k, v in written["left_out"].items()))
        for problem in written.get("problems", []):
            print(f"problem: {problem}", file=sys.stderr)
            problems += 1
    return problems


def cmd_models(_: argparse.Namespace) -> int:
    from factory.generators.catalog import list_models

    for model in list_models():
        measured = model.get("measured")
        speed = (f"; measured here: {measured['tokens_per_s']} tok/s generated ({measured['date']}, "
                 f"{measured['tokens']} tokens)") if measured else ""
        print(f"{model['name']:<32} {model['status']:<10} {model.get('description', '')}{speed}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from factory.publish.hub import push_run
    from factory.run.manifest import load_manifest

    repo = args.repo or (load_manifest(args.run_dir).hub.get("repo_id")
                         if (args.run_dir / "manifest.json").exists() else None)
    if not repo:
        raise FactoryError("push needs --repo owner/name (the recipe has no hub.repo_id)")
    _apply_pending_decisions(args.run_dir)
    result = push_run(args.run_dir, repo, token_env=args.token_env, private=args.private,
                      include_rejected=args.include_rejected, force=args.force)
    _print_push(args.run_dir, result)
    return 0


def _print_push(run_dir: Path, result: dict) -> None:
    print(f"pushed {run_dir} to {result['url']} (commit {result['commit'][:12]}, "
          f"{'private' if result['private'] else 'public'})")
    for path in result["files"]:
        print(f"  {path}")
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)


COMMANDS = {"build": cmd_build, "compare": cmd_compare, "validate": cmd_validate, "eval": cmd_eval, "models": cmd_models,
            "push": cmd_push, "export": cmd_export, "review": cmd_review}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Our own messages at INFO; libraries only when they warn (or everything with -v).
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("factory").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    for handler in logging.getLogger().handlers:  # every log line passes the secret scrubber
        handler.addFilter(RedactingFilter())
    try:
        with interrupts.catch_ctrl_c():
            code = COMMANDS[args.command](args)
            interrupts.check()
            return code
    except FactoryError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: finished requests are saved; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
