"""`factory push`: a real run directory, pushed by the real `datasets` and `huggingface_hub` clients to a
Hub-API server on loopback, then read back from what the server stored."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml
from conftest import CANARY_KEY, classification_recipe, write_recipe
from loopback_hub import LoopbackHub
from loopback_openai import Action, LoopbackOpenAI, default_text

from factory import build, load_recipe
from factory.cli import main
from factory.errors import PublishError
from factory.publish.hub import merge_card, push_run, split_card
from factory.run.store import RunStore, atomic_write_text

HUB_TOKEN = "hf_canary_DO_NOT_LEAK_9c4e1b7a2f"
REPO = "tester/tiny-synthetic"


@pytest.fixture()
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackHub]:
    """The loopback Hub, with both clients pointed at it and HF_TOKEN holding the canary token."""
    with LoopbackHub(HUB_TOKEN) as server:
        server.patch_clients(monkeypatch)
        monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
        datasets.disable_progress_bars()
        yield server
        datasets.enable_progress_bars()


def _some_refusals(body: dict, n: int) -> Action:
    """Every fifth request is refused, so the run has rejected rows to publish."""
    if body["seed"] % 5 == 0:
        return Action(text="I'm sorry, but I can't assist with that.")
    return Action(text=default_text(body))


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run (with the card the build writes) built once by the real pipeline against the
    loopback OpenAI server.

    This is the `loopback` + `canary_key` setup of tests/test_build_openai.py at module scope (those
    fixtures are per test, and one build serves every test here: each gets its own copy).
    """
    root = tmp_path_factory.mktemp("built")
    with pytest.MonkeyPatch.context() as patch, LoopbackOpenAI(script=_some_refusals) as server:
        patch.setenv("FACTORY_TEST_KEY", CANARY_KEY)
        spec = load_recipe(write_recipe(root / "r.yaml", classification_recipe(server.base_url)))
        result = build(spec, root / "run", progress=False)
    assert result.complete and result.passing
    assert (result.run_dir / "README.md").is_file(), "the build writes the dataset card (factory/publish/card.py)"
    return result.run_dir


@pytest.fixture()
def run_dir(built_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built_run, tmp_path / "run"))


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root, hidden ones included."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def hub_table(hub: LoopbackHub, prefix: str, repo: str = REPO) -> pd.DataFrame:
    files = hub.files(repo)
    parts = [pd.read_parquet(io.BytesIO(files[p])) for p in sorted(files) if p.startswith(prefix) and p.endswith(".parquet")]
    assert parts, f"no parquet under {prefix} on the hub: {sorted(files)}"
    return pd.concat(parts, ignore_index=True)


def load_from_hub(hub: LoopbackHub, cache: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, datasets.Dataset]:
    """`load_dataset` of each config from the loopback Hub, with every cache under `cache`."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache / "hub"))
    return {name: datasets.load_dataset(REPO, name, split="train", cache_dir=str(cache / "datasets"), token=HUB_TOKEN)
            for name in ("default", "rejected")}


def assert_token_never_stored(hub: LoopbackHub, run_dir: Path, output: str) -> None:
    used = [r for r in hub.log if r.headers.get("authorization") == f"Bearer {HUB_TOKEN}"]
    assert used, "the push never authenticated: the leak checks below would prove nothing"
    for secret in (HUB_TOKEN, CANARY_KEY):
        for blob in hub.stored_blobs():
            assert secret.encode() not in blob
        for request in hub.log:
            assert all(secret not in v for k, v in request.headers.items() if k != "authorization")
            assert secret not in request.path and secret not in json.dumps(request.query)
        for path in run_dir.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
        assert secret not in output


def test_push_uploads_the_dataset_and_the_card(run_dir: Path, hub: LoopbackHub, capfd) -> None:
    before = snapshot(run_dir)
    result = push_run(run_dir, REPO)

    local = datasets.load_from_disk(str(run_dir / "dataset")).to_pandas()
    pd.testing.assert_frame_equal(hub_table(hub, "data/train-"), local)
    assert len(local) == 10

    repo = hub.repo(REPO)
    assert repo.private is False and result["private"] is False
    assert result["repo_id"] == REPO and result["url"] == f"{hub.endpoint}/datasets/{REPO}"
    assert result["commit"] == repo.branches["main"]
    assert result["files"] == sorted(hub.files(REPO)) == [".gitattributes", "README.md", "data/train-00000-of-00001.parquet"]
    assert result["rows"] == {"train": 10} and result["card"] == "README.md"

    # The README on the Hub is our card: its body byte for byte, its metadata plus what the Hub computed.
    card = (run_dir / "README.md").read_text(encoding="utf-8")
    ours, _, body = split_card(card)
    theirs, yaml_text, hub_body = split_card(hub.files(REPO)["README.md"].decode())
    assert hub_body == body
    assert yaml.safe_load(yaml_text) == theirs
    assert {k: theirs[k] for k in ours} == ours
    assert theirs["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    info = theirs["dataset_info"]
    info = info[0] if isinstance(info, list) else info
    assert info["splits"] == [{"name": "train", "num_bytes": info["splits"][0]["num_bytes"], "num_examples": 10}]
    # The card is the last commit, after the data.
    assert repo.history()[-1].summary == "Dataset card from dataset-factory"

    assert snapshot(run_dir) == before
    out = capfd.readouterr()
    assert_token_never_stored(hub, run_dir, out.out + out.err)


def test_second_push_replaces_the_shards(run_dir: Path, hub: LoopbackHub) -> None:
    first = push_run(run_dir, REPO, private=True)
    assert hub.repo(REPO).private is True and first["private"] is True
    readme = hub.files(REPO)["README.md"]
    commits = len(hub.repo(REPO).history())
    second = push_run(run_dir, REPO, private=True)

    assert second["commit"] != first["commit"]
    assert second["files"] == first["files"]
    assert len(hub_table(hub, "data/")) == 10
    meta, _, _ = split_card(hub.files(REPO)["README.md"].decode())
    assert [c["config_name"] for c in meta["configs"]] == ["default"]
    info = meta["dataset_info"]
    assert (info[0] if isinstance(info, list) else info)["splits"][0]["num_examples"] == 10
    assert hub.files(REPO)["README.md"] == readme  # the card did not grow
    assert len(hub.repo(REPO).history()) > commits
    assert hub.repo(REPO).private is True


def test_private_push_refuses_an_existing_public_repo(run_dir: Path, hub: LoopbackHub) -> None:
    push_run(run_dir, REPO)
    commits = len(hub.repo(REPO).commits)
    with pytest.raises(PublishError, match="exists and is public"):
        push_run(run_dir, REPO, private=True)
    assert len(hub.repo(REPO).commits) == commits


def test_include_rejected_pushes_the_rejected_config(run_dir: Path, hub: LoopbackHub, tmp_path: Path, monkeypatch) -> None:
    rejected_lines = [json.loads(line) for line in (run_dir / "rejected.jsonl").read_text().splitlines()]
    assert any(r["reason"] == "refusal" for r in rejected_lines)

    result = push_run(run_dir, REPO, include_rejected=True)

    table = hub_table(hub, "rejected/train-")
    assert list(table["id"]) == [r["id"] for r in rejected_lines]
    assert list(table["reason"]) == [r["reason"] for r in rejected_lines]
    assert [json.loads(m) for m in table["meta"]] == [r["meta"] for r in rejected_lines]
    assert result["rows"] == {"train": 10, "rejected": len(rejected_lines)}
    meta, _, _ = split_card(hub.files(REPO)["README.md"].decode())
    assert [c["config_name"] for c in meta["configs"]] == ["default", "rejected"]
    assert {c["config_name"]: c["data_files"][0]["path"] for c in meta["configs"]}["rejected"] == "rejected/train-*"
    pd.testing.assert_frame_equal(hub_table(hub, "data/"), datasets.load_from_disk(str(run_dir / "dataset")).to_pandas())
    # What a user does next: load each config from the Hub (the card's `configs` route the files).
    loaded = load_from_hub(hub, tmp_path, monkeypatch)
    assert loaded["rejected"]["id"] == [r["id"] for r in rejected_lines]
    assert loaded["default"]["id"] == list(hub_table(hub, "data/")["id"])

    # A later push without the rejected rows removes them and their config: the Hub mirrors the run.
    again = push_run(run_dir, REPO)
    assert not any(p.startswith("rejected/") for p in again["files"])
    meta, _, _ = split_card(hub.files(REPO)["README.md"].decode())
    assert [c["config_name"] for c in meta["configs"]] == ["default"]


def test_a_torn_last_line_in_rejected_rows_does_not_stop_a_push(run_dir: Path, hub: LoopbackHub) -> None:
    rejected_lines = [json.loads(line) for line in (run_dir / "rejected.jsonl").read_text().splitlines()]
    with (run_dir / "rejected.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"id": "torn", "stage": "pa')  # a build killed mid-write
    result = push_run(run_dir, REPO, include_rejected=True)
    assert result["rows"] == {"train": 10, "rejected": len(rejected_lines)}
    assert list(hub_table(hub, "rejected/train-")["id"]) == [r["id"] for r in rejected_lines]


@pytest.mark.parametrize("pasted", [HUB_TOKEN, "sk-proj-" + "x1" * 20])
def test_a_token_pasted_as_the_variable_name_is_refused_without_echoing_it(
        run_dir: Path, hub: LoopbackHub, capsys, pasted: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["push", str(run_dir), "--repo", REPO, "--token-env", pasted])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "looks like a key or token" in err and pasted not in err
    with pytest.raises(PublishError) as raised:
        push_run(run_dir, REPO, token_env=pasted)
    assert "looks like a key or token" in str(raised.value) and pasted not in str(raised.value)
    assert hub.log == []


def test_recipe_hub_section_gives_the_defaults(run_dir: Path, hub: LoopbackHub, monkeypatch) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["recipe"]["hub"] = {"repo_id": REPO, "private": True, "token_env": "MY_HUB_TOKEN", "include_rejected": True}
    atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=2))
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(PublishError, match="MY_HUB_TOKEN"):
        push_run(run_dir, REPO)
    monkeypatch.setenv("MY_HUB_TOKEN", HUB_TOKEN)
    result = push_run(run_dir, REPO, private=False)  # the recipe's private=True is not weakened
    assert result["private"] is True and hub.repo(REPO).private is True
    assert "rejected" in result["rows"]


def test_failing_gate_refuses_and_force_overrides(run_dir: Path, hub: LoopbackHub, capsys) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    atomic_write_text(run_dir / "manifest.json", json.dumps({**manifest, "passing": False}, indent=2))
    before = snapshot(run_dir)

    with pytest.raises(PublishError, match="eval gate.*--force"):
        push_run(run_dir, REPO)
    assert main(["push", str(run_dir), "--repo", REPO]) == 1
    assert "--force" in capsys.readouterr().err
    assert hub.log == [] and snapshot(run_dir) == before

    assert main(["push", str(run_dir), "--repo", REPO, "--force"]) == 0
    out = capsys.readouterr()
    assert f"{hub.endpoint}/datasets/{REPO}" in out.out and "eval gate" in out.err
    assert len(hub_table(hub, "data/")) == 10
    assert snapshot(run_dir) == before


def test_cli_push_with_token_env(run_dir: Path, hub: LoopbackHub, monkeypatch, capfd) -> None:
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("MY_HUB_TOKEN", HUB_TOKEN)
    assert main(["push", str(run_dir), "--repo", REPO, "--token-env", "MY_HUB_TOKEN", "--include-rejected"]) == 0
    out = capfd.readouterr()
    assert "rejected/train-00000-of-00001.parquet" in out.out
    assert_token_never_stored(hub, run_dir, out.out + out.err)


@pytest.mark.parametrize("variable", [None, "MY_HUB_TOKEN"])
def test_missing_token_fails_clearly(run_dir: Path, hub: LoopbackHub, monkeypatch, capsys, variable: str | None) -> None:
    monkeypatch.delenv("HF_TOKEN")
    before = snapshot(run_dir)
    with pytest.raises(PublishError, match=f"set the environment variable {variable or 'HF_TOKEN'}"):
        push_run(run_dir, REPO, token_env=variable)
    argv = ["push", str(run_dir), "--repo", REPO] + (["--token-env", variable] if variable else [])
    assert main(argv) == 1
    assert (variable or "HF_TOKEN") in capsys.readouterr().err
    assert hub.log == [] and snapshot(run_dir) == before


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "bad name/x", "owner/ends-with-"])
def test_wrong_repo_id_fails_clearly(run_dir: Path, hub: LoopbackHub, capsys, repo_id: str) -> None:
    before = snapshot(run_dir)
    with pytest.raises(PublishError, match="invalid repo id"):
        push_run(run_dir, repo_id)
    assert main(["push", str(run_dir), "--repo", repo_id]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: invalid repo id") and "Traceback" not in err
    assert hub.log == [] and snapshot(run_dir) == before


def test_server_error_fails_clearly_and_leaves_the_run_alone(run_dir: Path, hub: LoopbackHub, capfd) -> None:
    before = snapshot(run_dir)
    hub.fail("POST", r"/commit/", status=500, times=None, message="injected fault: storage is down")
    with pytest.raises(PublishError) as caught:
        push_run(run_dir, REPO)
    message = str(caught.value)
    assert "500" in message and "injected fault: storage is down" in message and "/commit/main" in message
    assert main(["push", str(run_dir), "--repo", REPO]) == 1
    out = capfd.readouterr()
    assert "500" in out.err and "Traceback" not in out.err
    assert snapshot(run_dir) == before
    assert_token_never_stored(hub, run_dir, out.out + out.err + message)


def test_wrong_token_is_refused_without_echoing_it(run_dir: Path, hub: LoopbackHub, monkeypatch) -> None:
    wrong = "hf_wrong_token_ab12cd34ef"
    monkeypatch.setenv("HF_TOKEN", wrong)
    with pytest.raises(PublishError, match="rejected the token in HF_TOKEN") as caught:
        push_run(run_dir, REPO)
    assert wrong not in str(caught.value)
    assert (("dataset", REPO)) not in hub.repos


def test_unfinished_run_is_refused(tmp_path: Path, hub: LoopbackHub, run_dir: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "generated.jsonl").write_text("")
    with pytest.raises(PublishError, match="manifest.json is missing"):
        push_run(bare, REPO)
    (bare / "manifest.json").write_text((run_dir / "manifest.json").read_text())
    with pytest.raises(PublishError, match="dataset/ is missing"):
        push_run(bare, REPO)
    assert hub.log == []


def test_push_from_a_fresh_process_reads_hf_endpoint(run_dir: Path, hub: LoopbackHub) -> None:
    """The way users run it: HF_ENDPOINT set before Python starts, nothing patched."""
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": HUB_TOKEN}
    proc = subprocess.run([sys.executable, "-m", "factory", "push", str(run_dir), "--repo", REPO],
                          check=False, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(hub_table(hub, "data/")) == 10
    assert_token_never_stored(hub, run_dir, proc.stdout + proc.stderr)


def test_push_without_a_card_says_so(run_dir: Path, hub: LoopbackHub) -> None:
    (run_dir / "README.md").unlink()
    result = push_run(run_dir, REPO)
    assert result["card"] is None and any("no README.md" in w for w in result["warnings"])
    meta, _, body = split_card(hub.files(REPO)["README.md"].decode())  # the metadata-only card datasets wrote
    assert meta["configs"][0]["config_name"] == "default" and body.strip() == ""
    assert len(hub_table(hub, "data/")) == 10


def test_card_with_broken_yaml_is_refused_before_any_upload(run_dir: Path, hub: LoopbackHub) -> None:
    atomic_write_text(run_dir / "README.md", "---\nlicense: [unclosed\n---\n# x\n")
    with pytest.raises(PublishError, match="front matter does not parse"):
        push_run(run_dir, REPO)
    assert hub.log == []


def test_card_front_matter_reads_back_as_hub_card_data(run_dir: Path) -> None:
    from huggingface_hub import DatasetCard

    recipe = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["recipe"]
    card = DatasetCard((run_dir / "README.md").read_text(encoding="utf-8"))
    assert card.data.to_dict() == {
        "language": ["en"], "license": "other", "size_categories": ["n<1K"], "task_categories": ["text-classification"],
        "pretty_name": recipe["name"], "tags": ["synthetic", "dataset-factory", recipe["task"]],
    }
    assert card.text.startswith(f"\n# {recipe['name']}\n")


def test_run_in_use_by_a_build_is_refused(run_dir: Path, hub: LoopbackHub) -> None:
    with RunStore(run_dir), pytest.raises(PublishError, match="in use by a running `factory build`"):
        push_run(run_dir, REPO)
    assert hub.log == []


def test_merge_card_keeps_the_card_and_adds_the_hub_keys() -> None:
    card = "---\nlicense: mit  # ours\n---\n\n# Title\n\nBody.\n"
    hub_card = ("---\ndataset_info:\n- config_name: default\n  features: []\n- config_name: rejected\n  features: []\n"
                "configs:\n- config_name: default\n  data_files: data/*\n- config_name: rejected\n  data_files: rejected/*\n---\n")
    merged = merge_card(card, hub_card, drop_configs={"rejected"})
    assert merged.startswith("---\nlicense: mit  # ours\n") and merged.endswith("---\n\n# Title\n\nBody.\n")
    meta, _, _ = split_card(merged)
    assert meta["configs"] == [{"config_name": "default", "data_files": "data/*"}]
    assert [d["config_name"] for d in meta["dataset_info"]] == ["default"]
    assert merge_card("# No front matter\n", "") == "# No front matter\n"
    # A card that sets the Hub's keys itself gets the Hub's values (they describe what was uploaded).
    stale = merge_card("---\nconfigs: []\nlicense: mit\n---\nx\n", hub_card)
    assert split_card(stale)[0]["license"] == "mit" and len(split_card(stale)[0]["configs"]) == 2


@pytest.mark.parametrize(("gate", "flags", "pushed", "code"), [
    ({"min_macro_f1": 0.0}, [], True, 0),
    ({"min_gain": 0.99}, [], False, 4),
    ({"min_gain": 0.99}, ["--force"], True, 4),
])
def test_build_pushes_only_after_the_gate(tmp_path: Path, hub: LoopbackHub, loopback, canary_key: str, capsys,
                                           gate: dict, flags: list[str], pushed: bool, code: int) -> None:
    server = loopback()
    rows = [(f"real {label} row {i} with some words", label) for label in ("positive", "negative") for i in range(12)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "real.csv", index=False)
    recipe = classification_recipe(server.base_url)
    recipe |= {"real_data": {"path": "real.csv", "train_per_label": 4},
               "eval": {"seeds": [0], "ablation": False, "bootstrap": 100, "gate": gate},
               "hub": {"repo_id": REPO}}
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["build", str(path), "--out", str(tmp_path / "run"), "--no-progress", *flags]) == code
    assert (("dataset", REPO) in hub.repos) is pushed
    if pushed:
        assert "README.md" in hub.files(REPO)
    else:
        assert "not pushing" in capsys.readouterr().err


def test_a_grounded_run_publishes_passage_ids_but_no_document_names_or_folders(hub: LoopbackHub, tmp_path: Path,
                                                                              monkeypatch) -> None:
    private = tmp_path / "alice-private-notes"
    private.mkdir()
    for k, topic in enumerate(["kettle", "lamp", "chair", "blender", "toaster", "desk"]):
        (private / f"customer-{k}-{topic}.txt").write_text(f"The {topic} we sold to this customer arrived on time and works well.")
    monkeypatch.setenv("FACTORY_TEST_KEY", CANARY_KEY)
    with LoopbackOpenAI(script=_some_refusals) as server:
        recipe = classification_recipe(server.base_url, sources=[{"path": str(private)}])
        run = build(load_recipe(write_recipe(tmp_path / "r.yaml", recipe)), tmp_path / "run", progress=False).run_dir
    push_run(run, REPO, include_rejected=True)
    uploaded = b"".join(hub.files(REPO).values())
    assert b"customer-" not in uploaded and b"alice-private-notes" not in uploaded and str(tmp_path).encode() not in uploaded
    assert set(hub_table(hub, "data/")["source_passage"]) <= {
        json.loads(line)["id"] for line in (run / "corpus" / "passages.jsonl").read_text().splitlines()}
    assert all("passage_id" in json.loads(m) for m in hub_table(hub, "rejected/train-")["meta"])
    assert "| local documents 1 | 6 | 6 |" in hub.files(REPO)["README.md"].decode()


def test_push_applies_new_review_decisions_first(run_dir: Path, hub: LoopbackHub, capsys) -> None:
    from factory.run.decisions import REJECT, RELABEL, Decision, append

    local = pd.read_parquet(run_dir / "dataset" / "data" / "train.parquet")
    gone, flipped = local["id"][0], local["id"][1]
    other = {"positive": "negative", "negative": "positive"}[local["label"][1]]
    append(run_dir, [Decision(gone, REJECT, note="off topic"), Decision(flipped, RELABEL, label=other)])
    # No OpenAI server runs and no key is set here: the decisions are applied from the cached replies alone.
    assert main(["push", str(run_dir), "--repo", REPO]) == 0
    assert "applying 2 review decision(s)" in capsys.readouterr().err
    pushed = hub_table(hub, "data/train-").set_index("id")
    assert gone not in pushed.index and pushed.loc[flipped, "label"] == other
    assert "A person reviewed 2 of the generated rows" in hub.files(REPO)["README.md"].decode()
