"""The user's real labelled rows: reading them, and the seeded split into train and held-out rows."""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from factory.errors import DataError
from factory.records import Record
from factory.spec import RecipeBase


@dataclass(slots=True)
class RealSplit:
    """Real rows split once per run: `train` may reach prompts, filters and training; `validation` never does."""

    train: list[Record]
    validation: list[Record]


def local_path(path: str, base_dir: Path, field: str = "real_data.path") -> Path:
    """A file path; `package:DIST/inner/path` is a data file shipped inside an installed distribution
    (found through importlib.metadata, without importing the package)."""
    if path.startswith("package:"):
        dist, _, inner = path.removeprefix("package:").partition("/")
        try:
            return Path(str(metadata.distribution(dist).locate_file(inner)))
        except metadata.PackageNotFoundError:
            raise DataError(f"{field}: the package {dist!r} is not installed (pip install {dist})") from None
    return Path(path) if Path(path).is_absolute() else base_dir / path


def read_table(path: str, base_dir: Path, *, split: str = "train", field: str = "real_data.path"):  # noqa: ANN201
    """A csv / jsonl / parquet file, a `package:` file or an `hf:owner/name` dataset as a pandas
    DataFrame; DataError (naming `field`) when it cannot be read."""
    import pandas as pd

    if path.startswith("hf:"):
        import datasets

        try:
            return datasets.load_dataset(path[3:], split=split).to_pandas()
        except Exception as exc:  # the Hub client raises many types; the message is what matters
            raise DataError(f"{field}: could not load the Hub dataset {path[3:]!r} (split {split!r}): {exc}") from exc
    file = local_path(path, base_dir, field)
    if not file.exists():
        raise DataError(f"{field}: {file} does not exist")
    name = file.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz", ".csv.bz2")):
            return pd.read_csv(file, dtype=str, keep_default_na=False)
        if name.endswith((".jsonl", ".jsonl.gz", ".json")):
            return pd.read_json(file, lines=not name.endswith(".json"), dtype=False)
        if name.endswith(".parquet"):
            return pd.read_parquet(file)
    except (ValueError, OSError) as exc:
        raise DataError(f"{field}: cannot read {file}: {exc}") from exc
    raise DataError(f"{field}: {file} is not a csv, jsonl or parquet file")


def real_split(recipe: RecipeBase) -> RealSplit:
    """The recipe's real rows, read and split into training and validation (empty without real data)."""
    spec = recipe.real_rows()
    if spec is None:
        return RealSplit([], [])
    return split_real(load_real_rows(recipe), spec.train_per_label, split_seed(recipe), spec.validation_rows)


def split_seed(recipe: RecipeBase) -> int:
    """The seed that picks the real rows: `real_data.seed` when the recipe pins it, else the recipe's seed."""
    spec = recipe.real_rows()
    return recipe.seed if spec is None or spec.seed is None else spec.seed


def load_real_rows(recipe: RecipeBase) -> list[Record]:
    """Every usable real row, with labels mapped to the recipe's names (its buckets). Raises DataError on bad data."""
    real = recipe.real_rows()
    if real is None:
        return []
    labels = list(recipe.buckets())
    table = read_table(real.path, recipe.base_dir, split=real.split)
    for role, column in (("text", real.columns.text), ("label", real.columns.label)):
        if column not in table.columns:
            raise DataError(f"real_data.columns.{role}: column {column!r} not found; the file has {list(table.columns)}")
    rows: list[Record] = []
    unknown: dict[str, int] = defaultdict(int)
    empty = 0
    for text, raw_label in zip(table[real.columns.text], table[real.columns.label]):
        raw = str(raw_label)
        if raw in real.label_map and real.label_map[raw] is None:
            continue  # the user asked to skip these rows
        label = real.label_map.get(raw) or raw
        text = "" if text is None else str(text).strip()
        if label not in labels:
            unknown[label] += 1
            continue
        if not text:
            empty += 1
            continue
        rid = hashlib.sha256(f"{label}\0{text}".encode()).hexdigest()[:16]
        rows.append(Record({"text": text}, label=label, id=f"real-{rid}", meta={"source": "real"}))
    if unknown:
        shown = ", ".join(f"{k!r} ({v} rows)" for k, v in sorted(unknown.items())[:5])
        raise DataError(
            f"real_data: labels not in the recipe: {shown}; the recipe's labels are {labels} "
            "(map them with real_data.label_map, or map a value to null to skip its rows)"
        )
    if empty and not rows:
        raise DataError("real_data: every row has an empty text")
    missing = [label for label in labels if not any(r.label == label for r in rows)]
    if missing:
        raise DataError(f"real_data: no rows for label(s) {missing}")
    if real.max_rows and len(rows) > real.max_rows:
        rows = random.Random(split_seed(recipe)).sample(rows, real.max_rows)
    return rows


def split_real(rows: list[Record], per_label: int, seed: int, validation_rows: int | None = None) -> RealSplit:
    """Seeded split: `per_label` rows of each label for training, all the others held out (or a
    seeded sample of `validation_rows` of them; the rest are neither).

    Duplicate texts go to the same side, so no validation text is ever also a training text. The
    training rows do not depend on `validation_rows`.
    """
    by_label: dict[str, list[Record]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.id):  # input order must not matter
        by_label[row.label or ""].append(row)
    train: list[Record] = []
    validation: list[Record] = []
    for label in sorted(by_label):
        group = by_label[label]
        random.Random(f"{seed}/real/{label}").shuffle(group)
        chosen = {r.text for r in group[:per_label]}
        for row in group:
            (train if row.text in chosen else validation).append(row)
    if validation_rows is not None and len(validation) > validation_rows:
        validation = random.Random(f"{seed}/validation").sample(validation, validation_rows)
    return RealSplit(train, validation)
