"""run.dataset: the dataset/ folder a build writes, read back by load_from_disk, parquet and dataset_configs."""

from __future__ import annotations

from pathlib import Path

import datasets
import pandas as pd

from factory.run.dataset import dataset_configs, dataset_files, write_dataset
from factory.run.store import RunStore


def test_one_config_with_splits_and_a_rewrite(tmp_path: Path) -> None:
    rows = {"train": [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}], "validation": [{"id": "c", "text": "z"}]}
    write_dataset(tmp_path, {"default": rows})
    assert dataset_configs(tmp_path) == ["default"]
    files = dataset_files(tmp_path)
    assert list(files) == ["train", "validation"]
    assert pd.read_parquet(files["validation"])["id"].tolist() == ["c"]
    saved = datasets.load_from_disk(str(tmp_path / "dataset"))
    assert {split: len(table) for split, table in saved.items()} == {"train": 2, "validation": 1}
    with RunStore(tmp_path) as store:  # the store's method writes the same folder, swapped in whole
        store.write_dataset({"default": {"train": [{"id": "d", "text": "w"}]}})
    assert list(dataset_files(tmp_path)) == ["train"] and len(datasets.load_from_disk(str(tmp_path / "dataset"))) == 1
    assert not (tmp_path / ".dataset.partial").exists() and not (tmp_path / ".dataset.old").exists()


def test_several_configs_and_an_empty_table(tmp_path: Path) -> None:
    write_dataset(tmp_path, {"orders": {"train": [{"id": "o1", "total": 3.5}]}, "items": {"train": []}},
                  schemas={"items": {"id": "string", "sku": "string"}})
    assert dataset_configs(tmp_path) == ["orders", "items"]
    assert list(dataset_files(tmp_path, "items")) == ["train"]
    empty = datasets.load_from_disk(str(tmp_path / "dataset" / "items"))
    assert len(empty) == 0 and empty.column_names == ["id", "sku"]
