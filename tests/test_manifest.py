"""manifest.json has one typed owner (factory/run/manifest.py): it round-trips, old runs load, and a
manifest this version cannot read fails with a message that names the versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import classification_recipe, write_recipe

from factory import build, load_recipe
from factory.cli import main
from factory.run.manifest import SCHEMA_VERSION, ManifestError, load_manifest


@pytest.fixture()
def run_dir(tmp_path: Path, loopback, canary_key: str) -> Path:
    server = loopback()
    spec = load_recipe(write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url, generate={"per_label": 3})))
    return build(spec, tmp_path / "run", progress=False).run_dir


def test_the_written_manifest_round_trips_and_names_its_version(run_dir: Path) -> None:
    text = (run_dir / "manifest.json").read_text()
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION
    manifest = load_manifest(run_dir)
    assert manifest.to_json() == text
    assert manifest.task == "classification" and manifest.complete and manifest.rows == 6
    assert "eval" not in json.loads(text) and "stats" not in json.loads(text)["funnel"][0]


def test_a_manifest_from_before_schema_versions_loads(run_dir: Path, capsys, monkeypatch) -> None:
    path = run_dir / "manifest.json"
    data = json.loads(path.read_text())
    del data["schema_version"]
    path.write_text(json.dumps(data))
    assert load_manifest(run_dir).rows == 6
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["push", str(run_dir), "--repo", "me/x"]) == 1
    assert "no Hugging Face token" in capsys.readouterr().err  # it got past reading the manifest


@pytest.mark.parametrize(("version", "advice"), [(SCHEMA_VERSION + 1, "upgrade dataset-factory"), (0, "build the run again")])
def test_a_manifest_of_another_schema_version_fails_clearly(run_dir: Path, capsys, version: int, advice: str) -> None:
    path = run_dir / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": version}))
    with pytest.raises(ManifestError, match=f"schema version {version}.*reads version {SCHEMA_VERSION}.*{advice}"):
        load_manifest(run_dir)
    assert main(["eval", str(run_dir)]) == 1
    assert f"manifest schema version {version}" in capsys.readouterr().err


def test_a_damaged_manifest_names_the_field(run_dir: Path) -> None:
    path = run_dir / "manifest.json"
    data = json.loads(path.read_text())
    del data["funnel"]
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="funnel: Field required"):
        load_manifest(run_dir)
