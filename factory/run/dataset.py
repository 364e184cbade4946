"""A run's dataset/: the Hugging Face dataset (save_to_disk) and its parquet files, written and read.

The rest of the run directory (cache, rows, manifest, lock) is factory.run.store's.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from factory.records import DEFAULT_CONFIG
from factory.splits import SPLITS, TRAIN

CONFIGS_FILE = "configs.json"  # in dataset/ when a run has several configs (related tables)


def dataset_configs(run_dir: Path) -> list[str]:
    """The configs of a finished run's dataset, in order: ["default"] unless it has several tables."""
    listed = Path(run_dir) / "dataset" / CONFIGS_FILE
    return json.loads(listed.read_text()) if listed.is_file() else [DEFAULT_CONFIG]


def dataset_files(run_dir: Path, config: str = DEFAULT_CONFIG) -> dict[str, Path]:
    """A finished run's parquet file per split of `config`, in split order (train first)."""
    folder = Path(run_dir) / "dataset" / "data" / ("" if config == DEFAULT_CONFIG else config)
    return {split: path for split in SPLITS if (path := folder / f"{split}.parquet").is_file()}


def replace_dir(build: Path, target: Path) -> None:
    """Swap a fully written directory into place (the old one is removed only after)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(build, target)
    shutil.rmtree(old, ignore_errors=True)


def write_dataset(root: Path, configs: dict[str, dict[str, list[dict[str, Any]]]],
                  schemas: dict[str, dict[str, str]] | None = None) -> None:
    """dataset/ as a Hugging Face dataset (save_to_disk) plus data/<split>.parquet, swapped in atomically.

    `configs` is {config: {split: rows}}. With held-out splits the saved dataset is a DatasetDict.
    Several configs (related tables) are one saved dataset each, dataset/<config>/, with their
    parquet in data/<config>/<split>.parquet and their names, in order, in dataset/configs.json.
    A table with no rows gets the columns and types of `schemas[config]` ({column: dtype}), so it
    loads like any other."""
    import datasets

    root = Path(root)
    build = root / ".dataset.partial"
    shutil.rmtree(build, ignore_errors=True)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the build has its own progress bar
    single = list(configs) == [DEFAULT_CONFIG]
    try:
        for name, splits in configs.items():
            tables = {split: datasets.Dataset.from_list(rows) if rows else _empty(datasets, (schemas or {}).get(name))
                      for split, rows in splits.items()}
            saved = tables[TRAIN] if list(tables) == [TRAIN] else datasets.DatasetDict(tables)
            saved.save_to_disk(str(build if single else build / name), **_shards(tables))
            for split, table in tables.items():
                parquet = build / "data" / (f"{split}.parquet" if single else f"{name}/{split}.parquet")
                parquet.parent.mkdir(parents=True, exist_ok=True)
                table.to_parquet(str(parquet))
        if not single:
            (build / CONFIGS_FILE).write_text(json.dumps(list(configs)) + "\n")
    finally:
        if bars:
            datasets.enable_progress_bars()
    replace_dir(build, root / "dataset")


def _shards(tables: dict[str, Any]) -> dict[str, Any]:
    """save_to_disk's num_shards where a table is empty: datasets writes an empty table as no shard at all,
    which load_from_disk cannot read back (IndexError); one empty shard reads back as zero rows."""
    if all(len(t) for t in tables.values()):
        return {}
    if list(tables) == [TRAIN]:
        return {"num_shards": 1}
    shard = 500 << 20  # datasets' own default max_shard_size
    return {"num_shards": {split: max(1, -(-t.data.nbytes // shard)) for split, t in tables.items()}}


def _empty(datasets: Any, schema: dict[str, str] | None) -> Any:
    """A table with no rows and the given columns ({name: dtype}; id and text when none is given)."""
    schema = schema or {"id": "string", "text": "string"}
    return datasets.Dataset.from_dict({c: [] for c in schema},
                                      features=datasets.Features({c: datasets.Value(t) for c, t in schema.items()}))

