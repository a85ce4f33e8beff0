"""Reading and writing single-positive label files, keyed by image id.

Our format (``annotations/README.md``): a table with one row per image and the
columns ``image_id`` and ``class_name`` (or ``class_index``), optionally
``annotator`` and ``timestamp``. Parquet (``.parquet``) or CSV (anything else).

Also read:

* a table in id + one-hot form: an id column (``image_id`` or ``IMAGE\\LABEL``)
  and one 0/1 column per class, named as the classes, exactly one 1 per row;
* the seed's ``.npy`` layouts (AdaGC release): shape (N,) class indices or
  (N, C) one-hot, with no ids, aligned row by row with the split (reBEN: the
  train rows sorted by ``patch_id``).

Every loader validates the ids against the split and the classes against the
dataset and names the file and the offending rows when something is off.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from spml_rs.fileio import atomic_write_bytes

#: accepted names of the id column (ours, the AID-multilabel CSV convention)
ID_COLUMNS = ("image_id", "IMAGE\\LABEL")
#: columns of our format that are neither ids nor classes
EXTRA_COLUMNS = ("annotator", "timestamp")


class LabelFileError(ValueError):
    """A label file does not match the split or the classes it is used with."""


def read_table(path: str | Path) -> pa.Table:
    """Read a parquet or CSV table (CSV delimiter sniffed among comma, tab, semicolon)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    if path.suffix == ".parquet":
        return pq.read_table(path)
    text = path.read_text(encoding="utf-8-sig")
    first = text.splitlines()[0] if text else ""
    delimiter = max(",\t;", key=first.count)
    options = pa_csv.ParseOptions(delimiter=delimiter)
    convert = pa_csv.ConvertOptions(strings_can_be_null=False)
    return pa_csv.read_csv(
        io.BytesIO(text.encode()), parse_options=options, convert_options=convert
    )


def read_single_positives(
    path: str | Path,
    image_ids: Sequence[str],
    class_names: Sequence[str],
    allow_missing: bool = False,
) -> np.ndarray:
    """Load a single-positive file and align it with ``image_ids``.

    Accepts ``image_id`` + ``class_name`` (or ``class_index``) columns. When an
    image appears several times (e.g. an annotator changed their mind), the last
    row wins. Ids that are not in the split are an error; so are images of the
    split missing from the file, unless ``allow_missing`` (then they get -1).

    Returns:
        (N,) int64 class indices aligned with ``image_ids`` (-1: no label).
    """
    if Path(path).suffix == ".npy":
        return read_npy_positives(path, len(image_ids), len(class_names))
    table = read_table(path)
    id_column = next((c for c in ID_COLUMNS if c in table.column_names), None)
    if id_column is None:
        raise LabelFileError(
            f"{path}: no id column {list(ID_COLUMNS)} (found {sorted(table.column_names)})"
        )
    ids = [str(v) for v in table.column(id_column).to_pylist()]
    classes = _class_indices(path, table, class_names, id_column)

    position = {image_id: i for i, image_id in enumerate(image_ids)}
    unknown = [image_id for image_id in ids if image_id not in position]
    if unknown:
        raise LabelFileError(
            f"{path}: {len(unknown)} id(s) are not in this split (first: {unknown[:5]}); "
            "is the file for another split or dataset?"
        )
    positives = np.full(len(image_ids), -1, dtype=np.int64)
    for image_id, cls in zip(ids, classes, strict=True):
        positives[position[image_id]] = cls
    missing = np.flatnonzero(positives < 0)
    if missing.size and not allow_missing:
        raise LabelFileError(
            f"{path}: {missing.size} of {len(image_ids)} image(s) of the split have no label "
            f"(first: {[image_ids[i] for i in missing[:5]]}); to train on the labelled "
            "ones only, set label_mode.unlabelled=drop"
        )
    return positives


def _class_indices(
    path: str | Path, table: pa.Table, class_names: Sequence[str], id_column: str
) -> np.ndarray:
    num_classes = len(class_names)
    if "class_name" in table.column_names:
        lookup = {name: i for i, name in enumerate(class_names)}
        names = [str(v) for v in table.column("class_name").to_pylist()]
        bad = sorted({name for name in names if name not in lookup})
        if bad:
            raise LabelFileError(
                f"{path}: unknown class name(s) {bad[:5]}; expected one of {list(class_names)}"
            )
        return np.array([lookup[name] for name in names], dtype=np.int64)
    if "class_index" in table.column_names:
        idx = np.asarray(table.column("class_index").to_numpy(), dtype=np.int64)
        bad_rows = np.flatnonzero((idx < 0) | (idx >= num_classes))
        if bad_rows.size:
            raise LabelFileError(
                f"{path}: class_index must be in [0, {num_classes}); rows {bad_rows[:5].tolist()} "
                f"hold {idx[bad_rows[:5]].tolist()}"
            )
        return idx
    others = [c for c in table.column_names if c != id_column and c not in EXTRA_COLUMNS]
    if not others:
        raise LabelFileError(
            f"{path}: needs a 'class_name' or 'class_index' column, or one 0/1 column per class "
            f"(found {table.column_names})"
        )
    return _one_hot_table(path, table, others, class_names)


def _one_hot_table(
    path: str | Path, table: pa.Table, columns: list[str], class_names: Sequence[str]
) -> np.ndarray:
    """Id + one-hot form: one column per class, named as the classes."""
    unknown = [c for c in columns if c not in class_names]
    if unknown:
        raise LabelFileError(
            f"{path}: unknown class column(s) {unknown[:5]}; expected one 0/1 column per class "
            f"of {list(class_names)}"
        )
    missing = [c for c in class_names if c not in columns]
    if missing:
        raise LabelFileError(
            f"{path}: {len(columns)} class columns but the dataset has {len(class_names)} "
            f"classes (missing {missing[:5]})"
        )
    one_hot = np.stack(
        [np.asarray(table.column(c).to_numpy(), dtype=np.int64) for c in class_names], 1
    )
    return _one_hot_to_indices(path, one_hot)


def _one_hot_to_indices(path: str | Path, one_hot: np.ndarray) -> np.ndarray:
    bad = np.flatnonzero(((one_hot != 0) & (one_hot != 1)).any(axis=1) | (one_hot.sum(axis=1) != 1))
    if bad.size:
        raise LabelFileError(
            f"{path}: a single-positive one-hot row needs exactly one 1 and 0 elsewhere; "
            f"rows {bad[:5].tolist()} do not"
        )
    return one_hot.argmax(axis=1).astype(np.int64)


def read_npy_positives(path: str | Path, num_rows: int, num_classes: int) -> np.ndarray:
    """The seed's ``.npy`` layouts: (N,) class indices or (N, C) one-hot, aligned with the split.

    Returns:
        (N,) int64 class indices.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    array = np.load(path, allow_pickle=False)
    if array.ndim == 0 or array.ndim > 2 or len(array) != num_rows:
        raise LabelFileError(
            f"{path}: shape {array.shape}, but the split has {num_rows} images; a .npy label "
            f"file has no ids and must hold one row per image of the split, in split order "
            f"(reBEN: train rows sorted by patch_id): is it for another split or dataset?"
        )
    if array.ndim == 2:
        if array.shape[1] != num_classes:
            raise LabelFileError(
                f"{path}: one-hot rows of {array.shape[1]} classes, the dataset has {num_classes}"
            )
        return _one_hot_to_indices(path, array.astype(np.int64))
    if not np.issubdtype(array.dtype, np.integer):
        raise LabelFileError(f"{path}: class indices must be integers, got dtype {array.dtype}")
    indices = array.astype(np.int64)
    bad = np.flatnonzero((indices < 0) | (indices >= num_classes))
    if bad.size:
        raise LabelFileError(
            f"{path}: class indices must be in [0, {num_classes}); rows {bad[:5].tolist()} hold "
            f"{indices[bad[:5]].tolist()} (a file for a dataset with more classes?)"
        )
    return indices


def write_single_positives(
    path: str | Path,
    image_ids: Sequence[str],
    positives: np.ndarray,
    class_names: Sequence[str],
    extra_columns: dict[str, Sequence[object]] | None = None,
) -> None:
    """Write ``image_id, class_index, class_name`` (+ extras) atomically, parquet or CSV."""
    positives = np.asarray(positives, dtype=np.int64)
    columns: dict[str, object] = {
        "image_id": list(image_ids),
        "class_index": positives,
        "class_name": [class_names[i] for i in positives],
    }
    columns.update(extra_columns or {})
    table = pa.table(columns)
    sink = io.BytesIO()
    if Path(path).suffix == ".parquet":
        pq.write_table(table, sink)
    else:
        pa_csv.write_csv(table, sink)
    atomic_write_bytes(path, sink.getvalue())
