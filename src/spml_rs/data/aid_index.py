"""AID-multilabel's files: the label CSV, the image folders, the validation carve-out.

Hua, Mou, Zhu, "Relation Network for Multi-label Aerial Image Classification",
IEEE TGRS 2020. Layout (``docs/datasets_aid.md``)::

    root/images_tr/<Scene>/<scene>_<n>.jpg      official train split (2,400)
    root/images_test/<Scene>/<scene>_<n>.jpg    official test split (600)
    root/multilabel_correct_final.csv           labels (AdaGC's corrected copy)

The label CSV has the id column ``IMAGE\\LABEL`` (file name without extension)
and 17 binary columns in the pinned order :data:`AID17_CLASSES`; its delimiter
(comma or tab) is sniffed. Validation images are a seeded carve-out of the
official train folder (483 of 2,400 by default, the size of aitlas-arena's
1,917 / 483 / 600 split). AID has no pixel masks, so there is no Dominant setting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from spml_rs.data.classes import AID17_CLASSES
from spml_rs.data.index import DatasetIndex
from spml_rs.label_files import read_table

ID_COLUMN = "IMAGE\\LABEL"
CORRECTED_LABEL_FILE = "multilabel_correct_final.csv"
#: official split -> its image folder in ``root``
SPLIT_FOLDERS = {"train": "images_tr", "test": "images_test"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
#: decoded by a JPEG decoder (the others through PIL), so their content must be JPEG
JPEG_SUFFIXES = (".jpg", ".jpeg")


class AIDFormatError(ValueError):
    """The AID folder or its label CSV does not have the expected layout."""


def read_multilabel_csv(
    path: str | Path, class_names: Sequence[str] = AID17_CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """Parse an AID-multilabel CSV (comma or tab separated).

    Returns:
        (N,) image ids (str) and (N, C) uint8 labels, in file order.
    """
    table = read_table(path)
    found = [name.strip() for name in table.column_names]
    expected = [ID_COLUMN, *class_names]
    if found != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(found, expected, strict=False)) if a != b), None
        )
        where = (
            ""
            if first is None
            else f"(column {first} is {found[first]!r}, expected {expected[first]!r})"
        )
        raise AIDFormatError(
            f"{path}: expected the header {ID_COLUMN!r} followed by the {len(class_names)} "
            f"classes {list(class_names)} in this order; found {len(found)} column(s) "
            f"{found} {where}".rstrip()
        )
    ids = np.array([str(v).strip() for v in table.column(0).to_pylist()])
    duplicated = sorted(i for i, n in Counter(ids.tolist()).items() if n > 1)
    if duplicated:
        raise AIDFormatError(f"{path}: duplicated image id(s) {duplicated[:10]}")
    columns = [
        _binary_column(path, table.column(k).to_pylist(), found[k], ids)
        for k in range(1, len(found))
    ]
    return ids, np.stack(columns, axis=1)


def _binary_column(
    path: str | Path, values: list[object], name: str, ids: np.ndarray
) -> np.ndarray:
    """One class column as (N,) uint8 0/1; only the cells that are neither are reported."""
    parsed = [_binary_value(v) for v in values]
    bad = [i for i, v in enumerate(parsed) if v is None]
    if bad:
        rows = ", ".join(f"{ids[i]}={values[i]!r}" for i in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise AIDFormatError(f"{path}: column {name!r} must hold 0 or 1; bad row(s): {rows}{more}")
    return np.array(parsed, dtype=np.uint8)


def _binary_value(cell: object) -> int | None:
    """0 or 1 from a CSV cell, else None.

    Integer-valued numbers count: one ``1.0`` cell makes pyarrow read the whole
    column as float, and its ``0`` cells then arrive as ``0.0``.
    """
    try:
        number = float(str(cell).strip())
    except ValueError:
        return None
    return int(number) if number in (0.0, 1.0) else None


def image_header(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image, from its header alone (PIL reads the first few kB).

    Raises:
        AIDFormatError: naming ``path`` when the header cannot be read, or when a
            ``.jpg`` file is not a JPEG (the loader decodes those as JPEG).
    """
    try:
        with Image.open(path) as image:
            size, kind = (image.height, image.width), image.format
    except (OSError, SyntaxError, ValueError) as error:  # e.g. PIL's "Truncated File Read"
        raise AIDFormatError(f"AID: cannot read image {path}: {error}") from error
    if str(path).lower().endswith(JPEG_SUFFIXES) and kind != "JPEG":
        raise AIDFormatError(f"AID: image {path} is {kind}, expected JPEG (as its suffix says)")
    return size


def header_problem(path: str | Path) -> str | None:
    """Why the header of ``path`` cannot be read (:func:`image_header`), or None."""
    try:
        image_header(path)
    except AIDFormatError as error:
        return str(error)
    return None


def scan_images(folder: Path) -> dict[str, Path]:
    """``{image id: path}`` of every image under ``folder/<Scene>/``, sorted by id."""
    if not folder.is_dir():
        raise FileNotFoundError(f"AID: image folder not found: {folder}")
    found: dict[str, Path] = {}
    duplicated: list[str] = []
    for path in sorted(folder.glob("*/*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in found:
            duplicated.append(f"{found[path.stem]} / {path}")
        found[path.stem] = path
    if duplicated:
        raise AIDFormatError(f"AID: image id(s) appear twice: {duplicated[:5]}")
    return dict(sorted(found.items()))


def carve_validation(
    num_images: int, val_fraction: float, val_size: int | None, seed: int
) -> np.ndarray:
    """Boolean (N,) mask of the validation rows drawn from the official train split.

    ``val_size`` (a count) wins over ``val_fraction``; the draw is a seeded
    permutation, so the carve-out depends only on (N, size, seed).
    """
    count = val_size if val_size is not None else round(val_fraction * num_images)
    if not 0 < count < num_images:
        raise AIDFormatError(
            f"AID: the validation carve-out (val_size={val_size}, val_fraction={val_fraction}) "
            f"gives {count} of {num_images} train image(s); the val and train splits must both "
            "be non-empty"
        )
    mask = np.zeros(num_images, dtype=bool)
    mask[np.random.default_rng(seed).permutation(num_images)[:count]] = True
    return mask


@dataclass(frozen=True)
class AIDSplit:
    """Ids, (N, C) labels and image paths of one split."""

    ids: np.ndarray
    labels: np.ndarray
    paths: tuple[str, ...]


class AIDIndex(DatasetIndex):
    """AID-multilabel under ``root`` (``dataset=aid``): train / val / test ids, labels, paths.

    Args:
        root: folder holding ``images_tr/``, ``images_test/`` and the label CSV.
        label_file: label CSV, relative to ``root`` or absolute. None: the corrected
            ``multilabel_correct_final.csv`` when present, else ``fallback_label_file``.
        fallback_label_file: used when ``label_file`` is None and the corrected copy
            is absent (the original release's ``multilabel.csv``).
        val_fraction: share of the official train images carved out for validation;
            the default 0.20125 gives 483 of 2,400 (1,917 / 483 / 600 overall).
        val_size: number of validation images; overrides ``val_fraction``.
        val_seed: seed of the carve-out (kept apart from the run seed, so runs with
            different seeds validate on the same images).
    """

    name = "aid"
    class_names = AID17_CLASSES
    supported_label_modes = ("full", "random", "manual")

    def __init__(
        self,
        root: str | Path,
        *,
        label_file: str | None = None,
        fallback_label_file: str = "multilabel.csv",
        val_fraction: float = 0.20125,
        val_size: int | None = None,
        val_seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.label_file = label_file
        self.fallback_label_file = fallback_label_file
        self.val_fraction = val_fraction
        self.val_size = val_size
        self.val_seed = val_seed
        self._images: dict[str, dict[str, Path]] = {}
        self._splits: dict[str, AIDSplit] | None = None

    def unsupported_mode_hint(self) -> str:
        return (
            "AID-multilabel has no pixel masks, so no class can be called dominant; use "
            "label_mode=random or label_mode=manual (human single positives)."
        )

    def label_csv(self) -> Path:
        """The label CSV in use (see ``label_file``)."""
        if self.label_file is not None:
            path = Path(self.label_file)
            path = path if path.is_absolute() else self.root / path
            if not path.is_file():
                raise FileNotFoundError(f"AID: label file not found: {path}")
            return path
        for name in (CORRECTED_LABEL_FILE, self.fallback_label_file):
            if (self.root / name).is_file():
                return self.root / name
        raise FileNotFoundError(
            f"AID: no label CSV in {self.root}: expected {CORRECTED_LABEL_FILE} or "
            f"{self.fallback_label_file} (or set dataset.datamodule.label_file)"
        )

    def images(self, official_split: str) -> dict[str, Path]:
        """``{image id: path}`` of the official ``train`` or ``test`` folder, sorted by id."""
        if official_split not in self._images:
            folder = self.root / SPLIT_FOLDERS[official_split]
            self._images[official_split] = scan_images(folder)
        return self._images[official_split]

    def split(self, split: str) -> AIDSplit:
        """``train`` / ``val`` / ``test``, built once from the folders and the CSV."""
        if self._splits is None:
            self._splits = self._build_splits()
        return self._splits[split]

    def split_labels(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.split(split).ids, self.split(split).labels

    def also_labelled(self, split: str) -> np.ndarray:
        # A file over the official train folder also lists the carve-out.
        return self.split("val").ids if split == "train" else super().also_labelled(split)

    def _build_splits(self) -> dict[str, AIDSplit]:
        csv_path = self.label_csv()
        ids, labels = read_multilabel_csv(csv_path, self.class_names)
        row = {image_id: i for i, image_id in enumerate(ids)}
        images = {split: self.images(split) for split in SPLIT_FOLDERS}
        _check_coverage(csv_path, row, images)

        def subset(paths: dict[str, Path], keep: np.ndarray | None = None) -> AIDSplit:
            names = np.array(list(paths), dtype=str)
            names = names if keep is None else names[keep]
            rows = np.array([row[n] for n in names], dtype=np.int64)
            return AIDSplit(names, labels[rows], tuple(str(paths[n]) for n in names))

        train = images["train"]
        val = carve_validation(len(train), self.val_fraction, self.val_size, self.val_seed)
        return {
            "train": subset(train, ~val),
            "val": subset(train, val),
            "test": subset(images["test"]),
        }


def _check_coverage(
    csv_path: Path, rows: dict[str, int], images: dict[str, dict[str, Path]]
) -> None:
    """Every image needs a CSV row, every CSV row an image, no id in both splits."""
    for split, found in images.items():
        if not found:
            folder = csv_path.parent / SPLIT_FOLDERS[split]
            raise AIDFormatError(f"AID: the {split} split is empty: no images in {folder}/<Scene>/")
    both = sorted(set(images["train"]) & set(images["test"]))
    if both:
        raise AIDFormatError(f"AID: id(s) in both images_tr and images_test: {both[:10]}")
    on_disk = set(images["train"]) | set(images["test"])
    unlabelled = sorted(on_disk - set(rows))
    if unlabelled:
        raise AIDFormatError(
            f"{csv_path}: no label row for {len(unlabelled)} image(s) on disk: {unlabelled[:10]}"
        )
    missing = sorted(set(rows) - on_disk)
    if missing:
        raise AIDFormatError(
            f"AID: {len(missing)} image(s) listed in {csv_path} are missing under "
            f"{csv_path.parent}/{{images_tr,images_test}}/<Scene>/: {missing[:10]}"
        )
