"""Single-positive labels: generation (Random, Dominant), targets and label files.

Notation follows ``docs/methods.md``: the observed target ``z`` of an image is an
int8 vector of length C with 1 = observed positive, 0 = observed negative and
-1 = unknown. In the single-positive setting every training image has exactly
one 1 and C-1 unknowns; evaluation splits carry their full labels as 0/1.

Label modes:

* ``full``     -- every training image keeps all its labels (the ceiling).
* ``random``   -- one label drawn uniformly from the image's true labels, seeded.
* ``dominant`` -- the class covering the largest area (needs masks).
* ``manual``   -- a human choice, read from a label file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LABEL_MODES = ("full", "random", "dominant", "manual")
UNKNOWN = -1


def plain_ids(ids: Sequence[object] | np.ndarray, limit: int = 5) -> list[str]:
    """The first ``limit`` ids as plain ``str`` (a list of them prints ``['a', 'b']``,
    never numpy's ``np.str_('a')`` reprs), for error messages."""
    return [str(i) for i in list(ids[:limit])]


def rows_named(rows: np.ndarray, ids: Sequence[object] | np.ndarray | None, limit: int = 5) -> str:
    """``"(first: ['id', ...])"`` for error messages; ``"(first rows: [3, ...])"`` without ids."""
    if ids is None:
        return f"(first rows: {rows[:limit].tolist()})"
    return f"(first: {plain_ids(np.asarray(ids)[rows], limit)})"


def random_positives(
    labels: np.ndarray, seed: int, *, ids: Sequence[str] | np.ndarray | None = None
) -> np.ndarray:
    """Draw one true label per row, uniformly among the row's positives.

    Vectorised: every entry gets a uniform key, negatives get -1, and the
    argmax of each row is a uniform draw among its positives.

    Args:
        labels: (N, C) binary array of full labels; every row needs a positive.
        seed: seed of the draw; the same seed always gives the same result.
        ids: (N,) image ids, to name the images in errors (else row numbers).

    Returns:
        (N,) int64 class indices.
    """
    labels = np.asarray(labels).astype(bool)
    empty = np.flatnonzero(~labels.any(axis=1))
    if empty.size:
        raise ValueError(
            f"{empty.size} image(s) have no positive label {rows_named(empty, ids)}; "
            "a single positive cannot be drawn for them"
        )
    keys = np.random.default_rng(seed).random(labels.shape)
    keys[~labels] = -1.0
    return keys.argmax(axis=1).astype(np.int64)


def dominant_positives(
    class_areas: np.ndarray, *, ids: Sequence[str] | np.ndarray | None = None
) -> np.ndarray:
    """Class with the largest area per image; ties go to the lowest class index.

    Args:
        class_areas: (N, C) pixel counts (or area fractions) per class.
        ids: (N,) image ids, to name the images in errors (else row numbers).

    Returns:
        (N,) int64 class indices.
    """
    areas = np.asarray(class_areas)
    empty = np.flatnonzero(areas.max(axis=1) <= 0)
    if empty.size:
        raise ValueError(f"{empty.size} image(s) have no labelled area {rows_named(empty, ids)}")
    # np.argmax returns the first maximum, which is the lowest class index.
    return areas.argmax(axis=1).astype(np.int64)


def check_positives_are_true(positives: np.ndarray, labels: np.ndarray, ids: Sequence[str]) -> None:
    """Raise if a single positive is not one of the image's true labels."""
    rows = np.flatnonzero(positives >= 0)  # -1: no label, nothing to check
    bad = rows[np.asarray(labels)[rows, positives[rows]] == 0]
    if bad.size:
        examples = ", ".join(f"{ids[i]} (class {int(positives[i])})" for i in bad[:5])
        raise ValueError(
            f"{bad.size} single positive(s) are not among the image's true labels, e.g. {examples}"
        )


def single_positive_targets(positives: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) class indices -> (N, C) int8 targets: 1 at the positive, -1 elsewhere.

    A class index of -1 means "no label": the whole row stays unknown.
    """
    positives = np.asarray(positives, dtype=np.int64)
    if positives.ndim != 1:
        raise ValueError(f"expected a 1-d array of class indices, got shape {positives.shape}")
    out_of_range = np.flatnonzero((positives < -1) | (positives >= num_classes))
    if out_of_range.size:
        raise ValueError(
            f"class indices must lie in [0, {num_classes}) (or be -1: no label); rows {out_of_range[:5].tolist()} "
            f"hold {positives[out_of_range[:5]].tolist()}"
        )
    targets = np.full((len(positives), num_classes), UNKNOWN, dtype=np.int8)
    labelled = np.flatnonzero(positives >= 0)
    targets[labelled, positives[labelled]] = 1
    return targets


def full_targets(labels: np.ndarray) -> np.ndarray:
    """(N, C) binary labels -> int8 targets with every entry observed."""
    return np.asarray(labels).astype(np.int8)
