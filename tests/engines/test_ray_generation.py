"""--engine ray: a build's requests on Ray actors write the same dataset as a local build, also when a
worker is killed mid-build. A local Ray cluster with 2 CPUs, started by the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import CANARY_KEY, assert_resumes_after_sigkill, classification_recipe, write_recipe
from loopback_openai import Action, default_text

from factory.cli import main
from factory.run.manifest import load_manifest

pytest.importorskip("ray")


def funnel(run: Path) -> list[tuple]:
    return [(s.stage, s.rows_in, s.kept, tuple(sorted(s.dropped.items()))) for s in load_manifest(run).funnel]


def build_both(server, tmp_path: Path, **overrides) -> tuple[Path, Path]:
    recipe = classification_recipe(server.base_url, generate={"per_label": 12}, **overrides)
    runs = []
    for engine in ("local", "ray"):
        path = write_recipe(tmp_path / f"{engine}.yaml", recipe)
        run = tmp_path / engine
        assert main(["build", str(path), "--out", str(run), "--no-progress", "--engine", engine, "--workers", "2"]) == 0
        runs.append(run)
    return runs[0], runs[1]


def test_a_ray_build_writes_the_same_dataset_as_a_local_build(ray_cluster, loopback, tmp_path, canary_key, capsys) -> None:
    server = loopback()
    local, on_ray = build_both(server, tmp_path)
    assert "worker loop/1 (pid " in capsys.readouterr().out, "per-worker throughput in the terminal"
    data = Path("dataset") / "data" / "train.parquet"
    assert (local / data).read_bytes() == (on_ray / data).read_bytes()
    assert funnel(local) == funnel(on_ray)
    manifest = load_manifest(on_ray)
    assert manifest.recipe_hash == load_manifest(local).recipe_hash, "where it ran changes no row, nor the hash"
    generator = manifest.generators[0]
    assert generator["engine"] == "ray" and generator["workers"] == 2
    assert sum(w["requests"] for w in generator["worker_stats"]) == generator["requests"] - generator["cached"]
    assert len({w["pid"] for w in generator["worker_stats"]}) == 2

    # An export applying a review decision needs no cluster: it rebuilds here, from the cache, sending nothing.
    from factory.run.decisions import REJECT, Decision, append

    assert load_manifest(on_ray).recipe["engine"]["name"] == "ray"
    gone = pd.read_parquet(on_ray / data)["id"][0]
    append(on_ray, [Decision(gone, REJECT)])
    sent = len(server.log)
    assert main(["export", str(on_ray), "--format", "columns"]) == 0
    assert len(server.log) == sent and load_manifest(on_ray).engine["name"] == "local"
    assert gone not in set(pd.read_parquet(on_ray / data)["id"])


def test_a_worker_killed_mid_build_loses_nothing(ray_cluster, loopback, tmp_path, canary_key) -> None:
    killed = threading.Event()
    victims: list[int] = []

    def script(body: dict, n: int) -> Action:
        if len(server.log) == 12 and not killed.is_set():
            killed.set()  # SIGKILL one of the two worker processes while requests are in flight
            pids = subprocess.run(["pgrep", "-f", "GeneratorWorker"], capture_output=True, text=True).stdout.split()
            if pids:
                victims.append(int(pids[0]))
                os.kill(victims[0], signal.SIGKILL)
        return Action(text=default_text(body), delay=0.05)

    server = loopback(script=script)
    recipe = classification_recipe(server.base_url, generate={"per_label": 12})
    on_ray = tmp_path / "ray"
    path = write_recipe(tmp_path / "ray.yaml", recipe)
    assert main(["build", str(path), "--out", str(on_ray), "--no-progress", "--engine", "ray", "--workers", "2"]) == 0
    assert victims, "a worker process was killed"
    stats = load_manifest(on_ray).generators[0]["worker_stats"]
    assert len(stats) == 2 and victims[0] not in {w["pid"] for w in stats}, "the killed actor was restarted"
    local = tmp_path / "local"  # the same server (the endpoint is part of each request's key), no kill now
    assert main(["build", str(path), "--out", str(local), "--no-progress", "--engine", "local"]) == 0
    data = Path("dataset") / "data" / "train.parquet"
    assert (local / data).read_bytes() == (on_ray / data).read_bytes(), "the killed worker's prompts were re-issued"
    # A re-run on Ray sends nothing: every finished request was committed by the driver.
    assert funnel(local) == funnel(on_ray)
    before = len(server.log)
    assert main(["build", str(path), "--out", str(on_ray), "--no-progress", "--engine", "ray"]) == 0
    assert len(server.log) == before


def test_a_driver_killed_mid_build_resumes_without_resending(loopback, tmp_path) -> None:
    """kill -9 of the driver of a Ray build (its own cluster, in a subprocess); the re-run re-sends no
    finished request and writes exact counts without duplicates."""
    server = loopback(delay=0.05)
    path = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url, generate={"per_label": 40, "batch_size": 4}))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "factory", "build", str(path), "--out", str(out), "--no-progress", "--engine", "ray",
           "--workers", "2"]
    env = {**os.environ, "FACTORY_TEST_KEY": CANARY_KEY, "RAY_ADDRESS": ""}  # a cluster of its own, not the tests'
    assert_resumes_after_sigkill(server, cmd, env, out, per_label=40)


def test_a_local_build_imports_nothing_of_ray(loopback, tmp_path) -> None:
    server = loopback()
    path = write_recipe(tmp_path / "r.yaml", classification_recipe(server.base_url))
    probe = (f"import sys\nfrom factory.cli import main\nassert main(['build', {str(path)!r}, '--out', {str(tmp_path / 'run')!r}, "
             "'--no-progress']) == 0\nprint('RAY', sorted(m for m in sys.modules if m.split('.')[0] == 'ray' "
             "or m.startswith('factory.engines.ray')))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "FACTORY_TEST_KEY": CANARY_KEY})
    assert "RAY []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
