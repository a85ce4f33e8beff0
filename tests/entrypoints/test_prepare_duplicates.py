"""`prepare benv2-lmdb` with duplicated metadata rows (issue 12 item 21): unique ids are
counted, the duplicates are reported, nothing is counted as written that was not."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from spml_rs.data.benv2_builder import build_lmdb, discover
from spml_rs.data.benv2_lmdb import LazyLMDB
from spml_rs.prepare import main
from spml_testing import DATA

FIXTURE = DATA / "benv2"


def duplicated_metadata(tmp_path: Path) -> tuple[Path, list[str]]:
    table = pq.read_table(FIXTURE / "metadata.parquet")
    twice = table.slice(0, 2)
    out = tmp_path / "metadata.parquet"
    pq.write_table(pa.concat_tables([table, twice]), out)
    return out, twice.column("patch_id").to_pylist()


def test_duplicated_metadata_rows_are_built_and_counted_once(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    metadata, twice = duplicated_metadata(tmp_path)
    out = tmp_path / "lmdb"
    command = ["benv2-lmdb", "--s2", str(FIXTURE / "BigEarthNet-S2"), "--out", str(out)]
    assert main([*command, "--metadata", str(metadata)]) == 0
    err = capsys.readouterr().err
    assert "10 entries written, 0 already present, 0 failed (of 10)" in err
    assert f"2 key(s) appear more than once in the input, each is built once: {twice}" in err
    handle = LazyLMDB(out)
    assert len(handle) == 10
    handle.close()


def test_the_builder_never_counts_a_key_twice(tmp_path: Path) -> None:
    entries = discover(FIXTURE / "BigEarthNet-S2", None, None, [])
    report = build_lmdb([*entries, entries[0]], tmp_path / "lmdb")
    assert (report.written, report.skipped, report.failures) == (len(entries), 0, [])
