"""A recipe that runs model-written code checks the sandbox before its first request, and validate warns."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import classification_recipe, write_recipe

from factory.cli import main

# bubblewrap's own words when the kernel refuses an unprivileged user namespace (bubblewrap 0.8).
NO_USERNS = ("bwrap: No permissions to creating new namespace, likely because the kernel does not allow "
             "non-privileged user namespaces. On e.g. debian this can be enabled with 'sysctl kernel.unprivileged_userns_clone=1'.")


def code_recipe(base_url: str) -> dict:
    return {"name": "funcs", "task": "code", "seed": 2, "description": "Small Python functions.",
            "examples": [{"instruction": "Write `double(x)`.", "solution": "def double(x):\n    return 2 * x\n",
                          "tests": "assert double(2) == 4"}],
            "generate": {"count": 2}, "generators": classification_recipe(base_url)["generators"]}


def no_bubblewrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return "needs bubblewrap, which is not installed"


def bubblewrap_without_user_namespaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fault injected where the real one cannot be made here: a `bwrap` that fails as bubblewrap does."""
    folder = tmp_path / "bin"
    folder.mkdir()
    fake = folder / "bwrap"
    fake.write_text(f"#!/bin/sh\necho \"{NO_USERNS}\" >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return "user namespaces are off"


@pytest.mark.parametrize("broken", [no_bubblewrap, bubblewrap_without_user_namespaces])
def test_a_build_stops_before_its_first_request_and_validate_warns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], loopback, canary_key, broken) -> None:
    server = loopback(script=lambda body, n: pytest.fail("no request may be sent"))
    recipe = write_recipe(tmp_path / "funcs.yaml", code_recipe(server.base_url))
    expected = broken(tmp_path, monkeypatch)
    run = tmp_path / "run"
    assert main(["build", str(recipe), "--out", str(run), "--no-progress"]) == 1
    error = capsys.readouterr().err
    assert expected in error
    assert server.log == [] and not run.exists()
    assert main(["validate", str(recipe)]) == 0
    warning = capsys.readouterr().err
    assert "warning:" in warning and expected in warning and "before its first request" in warning


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_validate_says_nothing_of_the_sandbox_when_it_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path / "funcs.yaml", code_recipe("http://127.0.0.1:9/v1"))
    assert main(["validate", str(recipe)]) == 0
    assert "warning" not in capsys.readouterr().err
