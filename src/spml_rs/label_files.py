"""Reading and writing single-positive label files, keyed by image id.

Our format (``annotations/README.md``): a table with one row per image and the
columns ``image_id`` and ``class_name`` (or ``class_index``, or both when they
agree), optionally ``annotator`` and ``timestamp``. Parquet (``.parquet``) or CSV
(anything else).

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
from spml_rs.labels import plain_ids

#: accepted names of the id column (ours, the AID-multilabel CSV convention)
ID_COLUMNS = ("image_id", "IMAGE\\LABEL")
#: columns of our format that are neither ids nor classes
EXTRA_COLUMNS = ("annotator", "timestamp")


class LabelFileError(ValueError):
    """A label file does not match the split or the classes it is used with."""


def read_table(path: str | Path) -> pa.Table:
    """Read a parquet or CSV table (CSV delimiter sniffed among comma, tab, semicolon).

    Raises:
        LabelFileError: naming ``path`` when the file is empty or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    if path.suffix == ".parquet":
        try:
            return pq.read_table(path)
        except (pa.ArrowException, OSError) as error:
            raise LabelFileError(f"{path}: cannot read the parquet file ({error})") from error
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise LabelFileError(
            f"{path}: the file is empty; expected a header line (e.g. image_id,class_name) "
            "and one row per image"
        )
    first = text.lstrip().splitlines()[0]
    delimiter = max(",\t;", key=first.count)
    options = pa_csv.ParseOptions(delimiter=delimiter)
    convert = pa_csv.ConvertOptions(strings_can_be_null=False)
    try:
        return pa_csv.read_csv(
            io.BytesIO(text.encode()), parse_options=options, convert_options=convert
        )
    except pa.ArrowInvalid as error:
        raise LabelFileError(
            f"{path}: cannot parse the CSV (delimiter {delimiter!r}): {error}"
        ) from error


def read_single_positives(
    path: str | Path,
    image_ids: Sequence[str] | np.ndarray,
    class_names: Sequence[str],
    allow_missing: bool = False,
    ignored_ids: Sequence[str] | np.ndarray = (),
) -> np.ndarray:
    """Load a single-positive file and align it with ``image_ids``.

    Accepts ``image_id`` + ``class_name`` (or ``class_index``, or both when they
    agree) columns. When an image appears several times (e.g. an annotator
    changed their mind), the last row wins. Rows of ``ignored_ids`` (AID: the
    validation carve-out of the official train folder) are read and dropped. Other
    ids that are not in the split are an error; so are images of the split missing
    from the file, unless ``allow_missing`` (then they get -1).

    Returns:
        (N,) int64 class indices aligned with ``image_ids`` (-1: no label).
    """
    if Path(path).suffix == ".npy":
        return read_npy_positives(path, len(image_ids), len(class_names), image_ids)
    table = read_table(path)
    id_column = next((c for c in ID_COLUMNS if c in table.column_names), None)
    if id_column is None:
        raise LabelFileError(
            f"{path}: no id column {list(ID_COLUMNS)} (found {sorted(table.column_names)})"
        )
    ids = np.array([str(v) for v in table.column(id_column).to_pylist()], dtype=str)
    classes = _class_indices(path, table, class_names, ids)

    position = {str(image_id): i for i, image_id in enumerate(image_ids)}
    ignored = {str(image_id) for image_id in ignored_ids}
    unknown = [i for i in ids.tolist() if i not in position and i not in ignored]
    if unknown:
        raise LabelFileError(
            f"{path}: {len(unknown)} id(s) are not in this split (first: {unknown[:5]}); "
            "is the file for another split or dataset?"
        )
    positives = np.full(len(image_ids), -1, dtype=np.int64)
    for image_id, cls in zip(ids.tolist(), classes, strict=True):
        if image_id in position:
            positives[position[image_id]] = cls
    missing = np.flatnonzero(positives < 0)
    if missing.size and not allow_missing:
        raise LabelFileError(
            f"{path}: {missing.size} of {len(image_ids)} image(s) of the split have no label "
            f"(first: {plain_ids(np.asarray(image_ids)[missing])}); to train on the labelled "
            "ones only, set label_mode.unlabelled=drop"
        )
    return positives


def _class_indices(
    path: str | Path, table: pa.Table, class_names: Sequence[str], ids: np.ndarray
) -> np.ndarray:
    """(N,) class of each row: from ``class_name`` and/or ``class_index``, or one-hot columns."""
    columns = table.column_names
    by_name = _named_classes(path, table, class_names) if "class_name" in columns else None
    by_index = _indexed_classes(path, table, class_names, ids) if "class_index" in columns else None
    if by_name is not None and by_index is not None:
        _check_columns_agree(path, by_index, by_name, class_names, ids)
    found = by_name if by_name is not None else by_index
    if found is not None:
        return found
    others = [c for c in columns if c not in ID_COLUMNS and c not in EXTRA_COLUMNS]
    if not others:
        raise LabelFileError(
            f"{path}: needs a 'class_name' or 'class_index' column, or one 0/1 column per class "
            f"(found {columns})"
        )
    return _one_hot_table(path, table, others, class_names, ids)


def _named_classes(path: str | Path, table: pa.Table, class_names: Sequence[str]) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(class_names)}
    names = [str(v) for v in table.column("class_name").to_pylist()]
    bad = sorted({name for name in names if name not in lookup})
    if bad:
        raise LabelFileError(
            f"{path}: unknown class name(s) {bad[:5]}; expected one of {list(class_names)}"
        )
    return np.array([lookup[name] for name in names], dtype=np.int64)


def _indexed_classes(
    path: str | Path, table: pa.Table, class_names: Sequence[str], ids: np.ndarray
) -> np.ndarray:
    """``class_index`` column: integers in [0, C) (integer-valued floats such as 3.0 too)."""
    num_classes = len(class_names)
    column = table.column("class_index")
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise LabelFileError(f"{path}: class_index must hold integers, got {column.type} values")
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)  # null: nan
    valid = np.isfinite(values) & (values == np.round(values))
    valid &= (values >= 0) & (values < num_classes)
    bad = np.flatnonzero(~valid)
    if bad.size:
        held = [_as_written(v) for v in values[bad[:5]].tolist()]
        raise LabelFileError(
            f"{path}: class_index must be an integer in [0, {num_classes}); images "
            f"{plain_ids(ids[bad])} hold {held}"
        )
    return values.astype(np.int64)


def _as_written(value: float) -> int | float | None:
    """A number read from a table, shown as the user wrote it: 17.0 -> 17, nan (empty) -> None."""
    if np.isnan(value):
        return None
    return int(value) if np.isfinite(value) and value == round(value) else value


def _check_columns_agree(
    path: str | Path,
    by_index: np.ndarray,
    by_name: np.ndarray,
    class_names: Sequence[str],
    ids: np.ndarray,
) -> None:
    """A file with both ``class_index`` and ``class_name`` must say the same class in both."""
    bad = np.flatnonzero(by_index != by_name)
    if bad.size:
        rows = "; ".join(
            f"{ids[r]} (class_index {by_index[r]} = {class_names[by_index[r]]!r}, "
            f"class_name {class_names[by_name[r]]!r})"
            for r in bad[:5]
        )
        raise LabelFileError(
            f"{path}: class_index and class_name disagree in {bad.size} row(s): {rows}; "
            "fix one column, or keep only one of them"
        )


def _one_hot_table(
    path: str | Path,
    table: pa.Table,
    columns: list[str],
    class_names: Sequence[str],
    ids: np.ndarray,
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
    bad = _bad_one_hot_rows(one_hot)
    if bad.size:
        raise LabelFileError(f"{path}: {ONE_HOT_RULE}; images {plain_ids(ids[bad])} do not")
    return one_hot.argmax(axis=1).astype(np.int64)


ONE_HOT_RULE = "a single-positive one-hot row needs exactly one 1 and 0 elsewhere"


def _bad_one_hot_rows(one_hot: np.ndarray) -> np.ndarray:
    """Rows of an (N, C) array that are not one-hot."""
    return np.flatnonzero(
        ((one_hot != 0) & (one_hot != 1)).any(axis=1) | (one_hot.sum(axis=1) != 1)
    )


def _rows_and_images(rows: np.ndarray, image_ids: Sequence[str] | np.ndarray | None) -> str:
    """``rows [4, 7] (images ['a', 'b'])``: a ``.npy`` row is the split's image at that row."""
    named = "" if image_ids is None else f" (images {plain_ids(np.asarray(image_ids)[rows])})"
    return f"rows {rows[:5].tolist()}{named}"


def read_npy_positives(
    path: str | Path,
    num_rows: int,
    num_classes: int,
    image_ids: Sequence[str] | np.ndarray | None = None,
) -> np.ndarray:
    """The seed's ``.npy`` layouts: (N,) class indices or (N, C) one-hot, aligned with the split.

    ``image_ids`` (the split's, in order) name the images of bad rows in errors.

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
        bad = _bad_one_hot_rows(array.astype(np.int64))
        if bad.size:
            raise LabelFileError(
                f"{path}: {ONE_HOT_RULE}; {_rows_and_images(bad, image_ids)} do not"
            )
        return array.argmax(axis=1).astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise LabelFileError(f"{path}: class indices must be integers, got dtype {array.dtype}")
    indices = array.astype(np.int64)
    bad = np.flatnonzero((indices < 0) | (indices >= num_classes))
    if bad.size:
        raise LabelFileError(
            f"{path}: class indices must be in [0, {num_classes}); "
            f"{_rows_and_images(bad, image_ids)} hold {indices[bad[:5]].tolist()} "
            "(a file for a dataset with more classes?)"
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
