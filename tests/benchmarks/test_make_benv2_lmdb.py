"""benchmarks/make_benv2_lmdb.py: a synthetic reBEN the library reads as the real one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from make_benv2_lmdb import LMDB_NAME, write_synthetic_benv2

from spml_rs.data.benv2 import BENv2DataModule
from spml_rs.data.benv2_lmdb import LazyLMDB
from spml_rs.data.classes import BEN19_CLASSES
from spml_testing import DATA

REAL_SCHEMA = pq.read_schema(DATA / "benv2" / "metadata.parquet")


@pytest.mark.parametrize("sampled", [False, True])
def test_the_library_trains_on_it_with_every_band_set(tmp_path: Path, sampled: bool) -> None:
    metadata = DATA / "benv2" / "metadata.parquet" if sampled else None
    root = write_synthetic_benv2(tmp_path / "benv2", 8 if sampled else 40, metadata=metadata)
    table = pq.read_table(root / "metadata.parquet")
    assert table.schema.names == REAL_SCHEMA.names
    assert [f.type for f in table.schema] == [f.type for f in REAL_SCHEMA]
    if sampled:  # rows of the real file, their ids and labels
        real = set(pq.read_table(metadata).column("patch_id").to_pylist())
        assert set(table.column("patch_id").to_pylist()) <= real
    datamodule = BENv2DataModule(root=str(root), label_mode="random", bands="s1s2", batch_size=4)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    image = datamodule.normalize(batch["image"])
    assert image.shape[1:] == (12, 120, 120) and bool(image.isfinite().all())
    # reference maps hold codes of the patch's labels only: Dominant is derivable
    counts = datamodule.index.class_pixel_counts("train")
    _, labels = datamodule.index.split_labels("train")
    assert counts.sum(axis=1).tolist() == [120 * 120] * len(labels)
    assert np.array_equal(counts > 0, labels == 1)
    names = set(LazyLMDB(root / LMDB_NAME))
    assert len(names) == 3 * table.num_rows  # S2, S1 and the reference map of each row
    assert {n for labels in table.column("labels").to_pylist() for n in labels} <= set(
        BEN19_CLASSES
    )


def test_it_refuses_to_overwrite_and_checks_its_arguments(tmp_path: Path) -> None:
    out = write_synthetic_benv2(tmp_path / "b", 4, sources=("s2",))
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_synthetic_benv2(out, 4)
    assert len(LazyLMDB(out / LMDB_NAME)) == 4
    with pytest.raises(ValueError, match="sources"):
        write_synthetic_benv2(tmp_path / "c", 4, sources=("s3",))
    with pytest.raises(ValueError, match="at least 1"):
        write_synthetic_benv2(tmp_path / "d", 0)
    with pytest.raises(ValueError, match="has only 10 rows"):
        write_synthetic_benv2(tmp_path / "e", 11, metadata=DATA / "benv2" / "metadata.parquet")
