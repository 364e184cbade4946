"""The public entry points that tie the build to what follows it.

The build package renders and publishes nothing; `build()` here runs it with the one "after the
build" step, writing the dataset card and the HTML report. compare and the command line use this.
"""

from __future__ import annotations

from pathlib import Path

from factory.builder.builder import Builder, BuildResult, default_run_dir
from factory.recipe_file import recipe_of_run
from factory.report import write_documents
from factory.run.manifest import load_manifest
from factory.spec import RecipeBase


def build(spec: RecipeBase, run_dir: str | Path | None = None, *, progress: bool = True,
          only_generator: str | None = None, requests_per_bucket: int | None = None, replace: bool = False,
          no_wait: bool = False) -> BuildResult:
    """Run a validated recipe into `run_dir` (default runs/<name>), then write its card and report.

    Re-running resumes from the request cache. `only_generator` and `requests_per_bucket` are the
    fixed-request mode that `factory compare` uses: one generator, exactly N prompts per bucket.
    `replace`: build even into a folder that holds another recipe's run, replacing that run.
    `no_wait`: submit Batch API jobs and stop (status batch_pending); the next build collects them.
    """
    builder = Builder(spec, Path(run_dir) if run_dir else default_run_dir(spec), progress=progress,
                      only_generator=only_generator, requests_per_bucket=requests_per_bucket, after=(write_documents,),
                      replace=replace, no_wait=no_wait)
    return builder.run()


def apply_decisions(run_dir: str | Path, *, run_eval: bool = True, progress: bool = False) -> BuildResult:
    """Build `run_dir` again from its own recipe and cached replies alone, so that a person's decisions
    (`factory review`) made since its last build hold in its dataset, card and eval; nothing is sent.

    What the filters drop and the trim keeps is decided again with the decisions applied: surplus rows
    replace rejected ones. Should a rejection need a row that only a new request would bring, the build
    stops short (status offline) and says so; `factory build` sends it. It runs here, on the local engine,
    whatever the recipe's. `run_eval`: run the recipe's eval.
    """
    run_dir = Path(run_dir)
    fixed = load_manifest(run_dir).fixed_requests or {}  # a compare run makes compare's requests again
    spec = recipe_of_run(run_dir)
    spec.engine.name = "local"  # nothing is sent, so no Ray cluster is needed: an export never waits for one
    builder = Builder(spec, run_dir, progress=progress, after=(write_documents,), offline=True,
                      run_eval=run_eval, only_generator=fixed.get("generator"),
                      requests_per_bucket=fixed.get("requests_per_bucket"))
    return builder.run()
