"""Push a finished run directory to the Hugging Face Hub as a dataset repository.

The flow, with the real clients (`datasets` and `huggingface_hub`, no hand-written HTTP):

1. Check the run locally: finished (manifest.json and dataset/), not being rebuilt, passing its
   gate (or `force`), a valid `owner/name`, a token in the environment, a card whose YAML parses.
   Nothing is sent before all of this holds.
2. `create_repo` (private if asked, exist_ok) and check that an existing repo is not public when a
   private one was asked for.
3. `Dataset.push_to_hub` for the train split and any held-out splits (config "default", data/<split>-*.parquet) and, with
   `include_rejected`, for the rejected rows (config "rejected", rejected/train-*.parquet). Each push
   replaces the shards of its split, so pushing twice does not duplicate rows.
4. One last commit of our own: the run's README.md (the dataset card) and, without
   `include_rejected`, the removal of a `rejected` config left by an earlier push.

Why the card goes last: `push_to_hub` rewrites the README on the Hub, adding `dataset_info` and
`configs` to its YAML. Uploading the card first would leave its final text to `datasets` (which
re-serialises the whole front matter); uploading it last verbatim would drop `configs`, which
`load_dataset(repo, "rejected")` needs. So the last commit takes the card exactly as written and adds
only the two keys the Hub computed, read back from the Hub at the commit that step 3 produced
(`parent_commit` guards against a commit in between).

The run directory is only read, never written (no "pushes" record in the manifest): the manifest
and the card describe the build, and a failed push must leave the run byte-for-byte as it was. The
result dict says where the data went. The token is read from the environment and handed to the
clients; it never reaches a file, a log line or an error message.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from factory.errors import PublishError, require
from factory.records import DEFAULT_CONFIG
from factory.run.dataset import dataset_configs
from factory.run.manifest import Manifest, ManifestError, load_manifest
from factory.run.store import read_jsonl
from factory.secrets import check_env_name, name_secret_variables

log = logging.getLogger(__name__)

DEFAULT_TOKEN_ENV = "HF_TOKEN"
REJECTED_CONFIG = "rejected"
HUB_KEYS = ("dataset_info", "configs")  # the README keys push_to_hub computes from what it uploaded
REJECTED_COLUMNS = ("id", "stage", "reason", "text", "label", "detail", "meta")
AGAIN = ". The run directory is unchanged; the repo may hold part of this push: run the push again"
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?:(.*?)\r?\n)?---[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def push_run(run_dir: Path, repo_id: str, *, token_env: str | None = None, private: bool = False,
             include_rejected: bool = False, force: bool = False, revision: str = "main") -> dict[str, Any]:
    """Publish a finished run to the dataset repo `repo_id`; returns repo_id, url, commit and files.

    Settings left at their defaults fall back to the recipe's `hub:` section (token_env, private,
    include_rejected); `private` is never weakened by it. Raises PublishError with a message fit for
    the command line; the run directory is left untouched either way.
    """
    run_dir = Path(run_dir)
    with _run_lock(run_dir):
        manifest = _finished_manifest(run_dir)
        hub_settings = manifest.hub
        warnings: list[str] = []
        if not manifest.passing:
            if not force:
                raise PublishError(f"{run_dir} did not pass its eval gate (manifest.json: passing=false); "
                                   "the push is refused. Use --force to publish it anyway.")
            warnings.append("the run did not pass its eval gate; pushed because of --force")
        if not manifest.complete:
            warnings.append(f"the run stopped early (status: {manifest.status}): not every label reached its target")
        _check_repo_id(repo_id)
        variable = token_env or hub_settings.get("token_env") or DEFAULT_TOKEN_ENV
        try:
            check_env_name(variable, "the name of the environment variable that holds the Hub token")
        except ValueError as exc:
            raise PublishError(str(exc)) from None
        name_secret_variables([variable])
        token = _token(variable)
        card = _read_card(run_dir, warnings)
        push = _Push(run_dir, repo_id, token=token, revision=revision,
                     private=private or bool(hub_settings.get("private")),
                     include_rejected=include_rejected or bool(hub_settings.get("include_rejected")))
        with _as_publish_error(repo_id, variable, token, push.endpoint):
            result = push.run(card, warnings)
    log.debug("pushed %s to %s at commit %s", run_dir, result["url"], result["commit"])
    return result


class _Push:
    """One push of one run directory; all remote calls happen in `run`."""

    def __init__(self, run_dir: Path, repo_id: str, *, token: str, revision: str, private: bool,
                 include_rejected: bool) -> None:
        self.hf = require("huggingface_hub", "hub")
        self.run_dir = run_dir
        self.repo_id = repo_id
        self.revision = revision
        self.private = private
        self.include_rejected = include_rejected
        self.endpoint = _endpoint()
        self._token = token
        self.api = self.hf.HfApi(endpoint=self.endpoint, token=token, library_name="dataset-factory",
                                 library_version=_version())

    def run(self, card: str | None, warnings: list[str]) -> dict[str, Any]:
        import datasets

        # Everything local is read before the first request, so a bad file fails before any upload.
        configs = dataset_configs(self.run_dir)
        tables = {name: datasets.load_from_disk(str(self.run_dir / "dataset" / ("" if name == DEFAULT_CONFIG else name)))
                  for name in configs}
        rejected = self._rejected_dataset(datasets) if self.include_rejected else None
        if self.include_rejected and rejected is None:
            warnings.append("no rejected rows in rejected.jsonl: the rejected config was not pushed")

        url = self.api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True)
        info = self.api.repo_info(self.repo_id, repo_type="dataset")
        if self.private and not info.private:
            raise PublishError(f"{self.repo_id} already exists and is public, but this push asks for a private repo "
                               "(--private or the recipe's hub.private): make it private on the Hub first")
        # push_to_hub creates the branch for any revision it is given; "main" always exists.
        branch = None if self.revision == "main" else self.revision

        rows: dict[str, Any] = {}
        for name, table in tables.items():  # one config per table of a related recipe, else "default"
            splits = dict(table) if isinstance(table, datasets.DatasetDict) else {"train": table}  # held-out splits
            rows |= {split if name == DEFAULT_CONFIG else (name if split == "train" else f"{name}/{split}"): len(part)
                     for split, part in splits.items()}
            table.push_to_hub(self.repo_id, config_name=name, token=self._token, revision=branch,
                              commit_message=f"Upload {self.run_dir.name} ({'train' if name == DEFAULT_CONFIG else name}) "
                                             "with dataset-factory",
                              **({} if isinstance(table, datasets.DatasetDict) else {"split": "train"}))
        if rejected is not None:
            rows[REJECTED_CONFIG] = len(rejected)
            rejected.push_to_hub(self.repo_id, config_name=REJECTED_CONFIG, split="train", token=self._token,
                                 revision=branch, commit_message="Upload the rejected rows with dataset-factory")

        commit = self._finish(card, keep_rejected=rejected is not None)
        files = sorted(self.api.list_repo_files(self.repo_id, repo_type="dataset", revision=commit))
        return {"repo_id": self.repo_id, "url": str(url), "commit": commit, "files": files,
                "private": bool(info.private),
                "rows": rows, "card": "README.md" if card is not None else None, "warnings": warnings}

    def _rejected_dataset(self, datasets: Any) -> Any:
        """rejected.jsonl as a Dataset; meta becomes a JSON string (its keys differ from row to row)."""
        path = self.run_dir / "rejected.jsonl"
        if not path.is_file():
            return None
        columns: dict[str, list[str | None]] = {c: [] for c in REJECTED_COLUMNS}
        for row in read_jsonl(path):
            # A grounded row's document name is a file name from the user's folders: its passage id stays.
            row["meta"] = {k: v for k, v in (row.get("meta") or {}).items() if k != "document"}
            for column in REJECTED_COLUMNS:
                value = row.get(column)
                columns[column].append(json.dumps(value, ensure_ascii=False, sort_keys=True)
                                       if column == "meta" else (None if value is None else str(value)))
        if not columns["id"]:
            return None
        features = datasets.Features({c: datasets.Value("string") for c in REJECTED_COLUMNS})
        return datasets.Dataset.from_dict(columns, features=features)

    def _finish(self, card: str | None, *, keep_rejected: bool) -> str:
        """The last commit: our card (plus the Hub's configs) and no stale rejected config. Returns the head."""
        head = self.api.repo_info(self.repo_id, repo_type="dataset", revision=self.revision).sha
        files = set(self.api.list_repo_files(self.repo_id, repo_type="dataset", revision=head))
        hub_card = self._read_text("README.md", head) if "README.md" in files else ""
        drop = set() if keep_rejected else {REJECTED_CONFIG}
        final = merge_card(card if card is not None else hub_card, hub_card, drop_configs=drop)
        operations: list[Any] = []
        if final != hub_card:
            operations.append(self.hf.CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=final.encode("utf-8")))
        if not keep_rejected and any(f.startswith(REJECTED_CONFIG + "/") for f in files):
            operations.append(self.hf.CommitOperationDelete(path_in_repo=REJECTED_CONFIG + "/", is_folder=True))
        if not operations:
            return head
        info = self.api.create_commit(self.repo_id, operations=operations, repo_type="dataset", revision=self.revision,
                                      parent_commit=head, commit_message="Dataset card from dataset-factory")
        return info.oid

    def _read_text(self, path: str, revision: str) -> str:
        # local_dir keeps the download out of the user's Hugging Face cache.
        with tempfile.TemporaryDirectory(prefix="factory-push-") as tmp:
            local = self.api.hf_hub_download(self.repo_id, path, repo_type="dataset", revision=revision, local_dir=tmp)
            return Path(local).read_text(encoding="utf-8")


def split_card(text: str) -> tuple[dict[str, Any], str | None, str]:
    """(metadata, the YAML text as written or None, body) of a README with optional front matter."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, None, text
    try:
        meta = yaml.safe_load(match.group(1) or "") or {}
    except yaml.YAMLError as exc:
        raise PublishError(f"the dataset card's YAML front matter does not parse: {exc}") from None
    if not isinstance(meta, dict):
        raise PublishError("the dataset card's YAML front matter is not a mapping")
    return meta, match.group(1) or "", text[match.end():]


def merge_card(card: str, hub_card: str, *, drop_configs: Collection[str] = ()) -> str:
    """`card` with the `dataset_info` and `configs` that the Hub's README holds (minus `drop_configs`).

    The card's body is kept byte for byte. So is its YAML text when it has neither key (the Hub's
    keys are appended); otherwise the YAML is re-serialised with the Hub's values for those keys.
    """
    ours, yaml_text, body = split_card(card)
    theirs, _, _ = split_card(hub_card)
    computed = {key: value for key in HUB_KEYS if (value := _without_configs(theirs.get(key), drop_configs))}
    if any(key in ours for key in HUB_KEYS):
        meta = {k: v for k, v in ours.items() if k not in HUB_KEYS} | computed
        yaml_text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip("\n") if meta else None
    elif computed:
        block = yaml.safe_dump(computed, sort_keys=False, allow_unicode=True).rstrip("\n")
        yaml_text = f"{yaml_text.rstrip()}\n{block}" if yaml_text and yaml_text.strip() else block
    if yaml_text is None:
        return body
    return f"---\n{yaml_text}\n---\n{body}"


def _without_configs(value: Any, drop: Collection[str]) -> Any:
    """`dataset_info` (a mapping for one config, a list for several) or `configs`, minus `drop`."""
    if isinstance(value, dict):
        return None if value.get("config_name", "default") in drop else value
    if isinstance(value, list):
        return [v for v in value if not (isinstance(v, dict) and v.get("config_name", "default") in drop)] or None
    return value


def _read_card(run_dir: Path, warnings: list[str]) -> str | None:
    """The run's README.md, its front matter checked; None (and a warning) when there is none."""
    path = run_dir / "README.md"
    if not path.is_file():
        warnings.append("no README.md in the run directory: the Hub keeps the metadata-only card "
                        "that datasets wrote (write the card first, then push again)")
        return None
    text = path.read_text(encoding="utf-8")
    split_card(text)
    return text


def _finished_manifest(run_dir: Path) -> Manifest:
    if not run_dir.is_dir():
        raise PublishError(f"{run_dir} is not a run directory")
    try:
        manifest = load_manifest(run_dir)
    except ManifestError as exc:
        raise PublishError(str(exc)) from None
    if not (run_dir / "dataset").is_dir():
        raise PublishError(f"{run_dir} is not a finished run: dataset/ is missing (the build did not get that far)")
    return manifest


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the build's lock while reading, so a re-build cannot swap dataset/ mid-push.

    Only an existing lock file is taken: creating one would be a write into the run directory.
    """
    path = run_dir / ".lock"
    if not path.is_file():
        yield
        return
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise PublishError(f"{run_dir} is in use by a running `factory build`; push it once the build has finished") from None
    try:
        yield
    finally:
        lock.release()


def _check_repo_id(repo_id: str) -> None:
    require("huggingface_hub", "hub")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo_id.count("/") != 1:
        raise PublishError(f"invalid repo id {repo_id!r}: expected owner/name, e.g. me/movie-reviews-synthetic")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PublishError(f"invalid repo id {repo_id!r}: {exc}") from None


def _token(variable: str) -> str:
    token = os.environ.get(variable, "").strip()
    if not token:
        raise PublishError(f"no Hugging Face token: set the environment variable {variable} "
                           "(a token with write access, from https://huggingface.co/settings/tokens)")
    return token


def _endpoint() -> str:
    """The Hub URL both clients will use. They read HF_ENDPOINT once, at import; refuse if they disagree."""
    import datasets.config
    from huggingface_hub import constants

    hub = constants.ENDPOINT.rstrip("/")
    ours = datasets.config.HF_ENDPOINT.rstrip("/")
    wanted = os.environ.get("HF_ENDPOINT", "").rstrip("/") or hub
    if len({hub, ours, wanted}) > 1:
        raise PublishError(f"HF_ENDPOINT is {wanted}, but huggingface_hub uses {hub} and datasets uses {ours}: "
                           "both read it when first imported, so set it before Python starts")
    if constants.HF_HUB_OFFLINE or datasets.config.HF_HUB_OFFLINE:
        raise PublishError("offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): unset it to push")
    return hub


@contextmanager
def _as_publish_error(repo_id: str, variable: str, token: str, endpoint: str) -> Iterator[None]:
    """Turn any failure of the remote side into a PublishError whose message never holds the token.

    The clients raise from several hierarchies (HfHubHTTPError, the HTTP library's transport
    errors, ValueError on malformed replies, RuntimeError around LFS uploads), so everything but
    our own errors is caught here, at the one boundary where the run meets the network.
    """
    try:
        yield
    except PublishError as exc:
        raise PublishError(str(exc).replace(token, "***")) from None
    except Exception as exc:  # noqa: BLE001 - see the docstring
        raise PublishError(_describe(exc, repo_id, variable, endpoint).replace(token, "***")) from None


def _describe(exc: Exception, repo_id: str, variable: str, endpoint: str) -> str:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(exc).__name__}: {exc}"
        if cause is not None and str(cause) != str(exc):
            detail += f" ({type(cause).__name__}: {cause})"
        return f"push to {repo_id} at {endpoint} failed: {detail}{AGAIN}"
    request = getattr(response, "request", None)
    where = f"{request.method} {request.url.path}" if request is not None else "a request"
    said = getattr(exc, "server_message", None) or ""
    said = f": {said.strip()}" if said.strip() else ""
    if status == 401:
        return f"the Hub at {endpoint} rejected the token in {variable} (401 Unauthorized on {where}){said}"
    if status == 403:
        return f"the token in {variable} may not write to {repo_id} (403 Forbidden on {where}){said}"
    if status == 412:
        return f"{repo_id} changed on the Hub during the push (412 on {where}); push again"
    return f"the Hub at {endpoint} answered {status} to {where} while pushing {repo_id}{said}{AGAIN}"


def _version() -> str:
    try:
        return metadata.version("dataset-factory")
    except metadata.PackageNotFoundError:
        return "0"
