"""Secrets: a key pasted where a variable's name belongs is refused without being echoed, and the
values of secret-holding variables never reach a message, a log line, a manifest or a card."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import CANARY_KEY, classification_recipe, write_recipe

from factory.cli import main
from factory.secrets import looks_like_secret, redact

GOOD = """\
name: ok
task: classification
labels:
  a: {description: "first"}
  b: {description: "second"}
"""
PASTED = ["sk-proj-Abc123def456ghi789jkl012mno345", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345", "ghp_0123456789abcdefABCDEF0123456789abcd",
          "0123456789abcdef0123456789abcdef01234567"]


@pytest.mark.parametrize("secret", PASTED)
@pytest.mark.parametrize("where", ["generator", "hub"])
def test_a_key_in_a_variable_name_field_is_refused_and_not_echoed(tmp_path: Path, capsys, secret: str, where: str) -> None:
    if where == "generator":
        text = GOOD + f"generators:\n  - {{backend: openai, model: m, api_key_env: {secret}}}\n"
        field = "generators[0].api_key_env"
    else:
        text = GOOD + f"hub: {{repo_id: me/x, token_env: {secret}}}\n"
        field = "hub.token_env"
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert field in err and "looks like a key or token" in err
    assert secret not in err and secret[:12] not in err


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "HF_TOKEN", "MY_HUB_TOKEN", "hf_token", "sk_key", "Azure_OpenAI_Key_2"])
def test_ordinary_variable_names_are_accepted(name: str) -> None:
    assert not looks_like_secret(name)


def test_redact_scrubs_variable_values_and_token_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "plain-looking-value-42")
    text = redact("token plain-looking-value-42 and sk-proj-Abc123def456ghi789 in (hf_AbCdEfGhIjKlMnOp)")
    assert text == "token *** and *** in (***)"


def test_no_secret_in_logs_errors_manifest_or_card(tmp_path: Path, loopback, canary_key: str, capsys, caplog) -> None:
    server = loopback()
    recipe = classification_recipe(server.base_url, generate={"per_label": 2})
    # A careless user puts the key into a field that is sent, not named (extra_body): it must still
    # never be written back anywhere the factory writes.
    recipe["generators"][0]["extra_body"] = {"user": CANARY_KEY}
    out = tmp_path / "run"
    with caplog.at_level(logging.DEBUG):
        assert main(["-v", "build", str(write_recipe(tmp_path / "r.yaml", recipe)), "--out", str(out), "--no-progress"]) == 0
    logged = "\n".join(r.getMessage() for r in caplog.records)
    captured = capsys.readouterr()
    for text in (logged, captured.out, captured.err, (out / "manifest.json").read_text(), (out / "README.md").read_text()):
        assert CANARY_KEY not in text
    assert json.loads((out / "manifest.json").read_text())["recipe"]["generators"][0]["extra_body"]["user"] == "***"

    # An error message that would carry the key (here: the server is gone and the key was in the URL) is scrubbed.
    server.__exit__(None, None, None)
    recipe["generators"][0]["base_url"] = f"http://127.0.0.1:9/{CANARY_KEY}/v1"
    recipe["generators"][0]["max_attempts"] = 1
    recipe["name"] = "gone"
    assert main(["build", str(write_recipe(tmp_path / "g.yaml", recipe)), "--out", str(tmp_path / "g"), "--no-progress"]) in (1, 3)
    captured = capsys.readouterr()
    assert CANARY_KEY not in captured.out + captured.err
