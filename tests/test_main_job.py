"""The README's main job, small: the shipped movie-reviews recipe on the packaged default model.

This is the test that fails when the default install cannot generate (a llama.cpp build that
faults on this CPU, a model package that does not assemble, a missing data file): the README's
set-up command installs everything it needs, and so does .ci/run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from factory.spec import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_main_recipe_builds_with_the_packaged_default_model(tmp_path: Path) -> None:
    out = tmp_path / "movie-reviews"
    cmd = [sys.executable, "-m", "factory", "build", str(ROOT / "recipes" / "movie-reviews.yaml"),
           "--out", str(out), "--per-label", "2", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    generator = manifest["generators"][0]
    assert generator["model"] == DEFAULT_MODEL and generator["backend"] == "llamacpp"
    assert generator["cpu_path"] in ("default", "no_repack")
    assert generator["requests"] > generator["cached"] and generator["completion_tokens"] > 0
    assert manifest["status"] == "complete" and manifest["rows"] == 4
    table = pd.read_parquet(out / "dataset" / "data" / "train.parquet")
    assert sorted(table["label"]) == ["fresh", "fresh", "rotten", "rotten"]
    assert all(len(text.split()) >= 5 for text in table["text"])
    linear = manifest["eval"]["evaluators"]["linear"]
    assert manifest["eval"]["validation_rows"] == 2000 and 0 < linear["synthetic+real"]["macro_f1"]["mean"] <= 1
    assert "macro-F1" in done.stdout
