"""Checks of a dataset's files at setup, before training: ``dataset.datamodule.verify``.

A missing LMDB key or an undecodable image in ``val`` or ``test`` would
otherwise stop a run only when that split is first read, after hours of
training. The datamodule therefore checks every split a run uses when it is
set up (``fit`` also checks ``test``, which the run evaluates at the end):

* ``keys`` (default): cheap checks of every item, e.g. one LMDB read
  transaction over all keys, a header decode of every JPEG;
* ``full``: also read (decode) every sample as a DataLoader worker would;
* ``none``: no checks (the first bad item fails the run when it is read).

Failures are collected, not raised one at a time: the error lists the first
few items of each split with the file, key or path and why, and how many
there are in all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
from rich.console import Console
from rich.progress import track

from spml_rs.data.splits import SplitDataset

VERIFY_LEVELS = ("keys", "full", "none")
#: splits of at least this many items show a progress bar while they are checked
PROGRESS_FROM = 5000
#: failures listed per split (the count says how many there are in all)
LISTED = 5

T = TypeVar("T")


class SplitCheckError(ValueError):
    """Items of a split in use are missing or unreadable (found at setup)."""


def check_level(verify: str) -> None:
    if verify not in VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {VERIFY_LEVELS}, got {verify!r}")


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an integer >= 1 (not a bool, a float or a string of digits)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 1)


def progress(items: Sequence[T], description: str, work: int | None = None) -> Iterable[T]:
    """``items``, with a transient progress bar on stderr when the ``work`` they stand for
    (default: their number) is at least :data:`PROGRESS_FROM`."""
    if (len(items) if work is None else work) < PROGRESS_FROM:
        return items
    return track(items, description=description, transient=True, console=Console(stderr=True))


def chunks(items: Sequence[T], size: int = 8192) -> list[Sequence[T]]:
    """``items`` in consecutive pieces of ``size`` (one progress step each)."""
    return [items[start : start + size] for start in range(0, len(items), size)]


class Failures:
    """Bad items of the splits checked so far; :meth:`raise_if_any` reports them all."""

    def __init__(self, what: str) -> None:
        self.what = what  # e.g. "verify=keys: LMDB keys"
        self.by_split: dict[str, tuple[int, list[str]]] = {}

    def add(self, split: str, total: int, problems: list[str]) -> None:
        """``problems`` (one line each) among the ``total`` items of ``split``."""
        if problems:
            self.by_split[split] = (total, problems)

    def raise_if_any(self, hint: str) -> None:
        if not self.by_split:
            return
        parts = []
        for split, (total, problems) in self.by_split.items():
            listed = "".join(f"\n  {line}" for line in problems[:LISTED])
            more = f"\n  ... and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
            parts.append(
                f"{len(problems)} of {total} image(s) of split {split!r} failed:{listed}{more}"
            )
        raise SplitCheckError(f"{self.what}, checked at setup: " + "\n".join(parts) + f"\n{hint}")


def read_every_sample(
    datasets: dict[str, SplitDataset], hint: str, errors: tuple[type[Exception], ...]
) -> None:
    """``verify=full``: read every sample of every split as a worker would.

    Raises:
        SplitCheckError: listing, per split, the samples whose read raised one of ``errors``.
    """
    failures = Failures("verify=full: reading every sample")
    for split, dataset in datasets.items():
        problems = [
            f"{dataset.image_ids[row]}: {error}"
            for row, error in _read_errors(dataset, split, errors)
        ]
        failures.add(split, len(dataset), problems)
    failures.raise_if_any(hint)


def _read_errors(
    dataset: SplitDataset, split: str, errors: tuple[type[Exception], ...]
) -> Iterator[tuple[int, Exception]]:
    for row in progress(range(len(dataset)), f"verify=full: reading {split}"):
        try:
            dataset.read_image(row)
        except errors as error:
            yield row, error


def collect(
    items: Sequence[T], check: Callable[[T], str | None], split: str, what: str
) -> list[str]:
    """``check(item)`` of every item (None: fine, else the problem), with a progress bar."""
    found = (check(item) for item in progress(items, f"{what}: {split}"))
    return [problem for problem in found if problem is not None]
