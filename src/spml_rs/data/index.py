"""What a dataset's files say, apart from any training run: :class:`DatasetIndex`.

An index knows one dataset's files (metadata, label CSV, image folders, LMDB
location, reference maps) or, for synthetic data, the scene cache. It answers,
for each split, which images there are and their full labels; it knows the
class names and which single-positive settings the data allow. It knows
nothing of label modes, batching or devices: that is the datamodule's job
(:class:`spml_rs.data.base.SPMLDataModule`), which receives an index.

``prepare spml-labels`` and the annotator's sources use an index alone, so
that they see exactly the images a training run sees.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from spml_rs import labels as spl

if TYPE_CHECKING:
    from typing_extensions import Self

SPLITS = ("train", "val", "test")


class DatasetIndex(abc.ABC):
    """One dataset's splits: image ids and full labels, read from its files.

    Subclasses set :attr:`name` and :attr:`class_names` and implement
    :meth:`split_labels`. Constructor parameters are named like the datamodule
    config keys they come from (``root``, ``lmdb_name``, ...), which lets
    :meth:`from_config` build the index a ``dataset=<name>`` config describes.
    """

    name: str
    class_names: tuple[str, ...]
    #: label modes the data allow (e.g. no ``dominant`` without pixel masks)
    supported_label_modes: ClassVar[tuple[str, ...]] = spl.LABEL_MODES
    #: whether :meth:`dominant_positives` knows the dominant classes without a label file
    derives_dominant: ClassVar[bool] = False
    #: False for generated data: no files to prepare labels for
    reads_files: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        """The index of a datamodule's arguments or config: its keys that name our parameters.

        Datamodules build their index this way from their own arguments, and
        ``prepare`` from a composed ``dataset.datamodule`` config, so both read
        the same files the same way.
        """
        parameters = inspect.signature(cls).parameters
        return cls(**{key: config[key] for key in parameters if key in config})

    @abc.abstractmethod
    def split_labels(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(N,) image ids (str) and (N, C) uint8 full labels of ``split``, in dataset order."""

    def also_labelled(self, split: str) -> np.ndarray:
        """Ids a label file of ``split`` may list besides the split's own (they are ignored).

        AID: the validation carve-out of the official train folder, so that one
        file over the folder serves every carve-out. None elsewhere.
        """
        return np.array([], dtype=str)

    def dominant_positives(self, split: str) -> np.ndarray:
        """(N,) dominant class per image of ``split``, where :attr:`derives_dominant`."""
        raise ValueError(self.dominant_needs_file())

    # ------------------------------------------------------------- label modes
    def check_label_mode(self, mode: str) -> None:
        """Refuse a label mode these data cannot serve, saying why."""
        if mode not in spl.LABEL_MODES:
            raise ValueError(f"label_mode must be one of {spl.LABEL_MODES}, got {mode!r}")
        if mode not in self.supported_label_modes:
            raise ValueError(
                f"label_mode={mode!r} is not available for dataset {self.name!r} "
                f"(supported: {list(self.supported_label_modes)}). {self.unsupported_mode_hint()}"
            )

    def unsupported_mode_hint(self) -> str:
        """Extra sentence for the error raised when a label mode is not supported."""
        return ""

    def dominant_needs_file(self) -> str:
        return (
            f"label_mode=dominant on dataset {self.name!r} needs a label file: generate it with "
            "`python -m spml_rs.prepare spml-labels --mode dominant ...` and set label_mode.path"
        )


@runtime_checkable
class ClassAreas(Protocol):
    """An index with pixel masks: per-class pixel counts, the source of Dominant labels."""

    def class_pixel_counts(
        self, split: str, reference_maps: str | Path | None, *, progress: Callable[[int], None]
    ) -> np.ndarray:
        """(N, C) pixels per class of each image of ``split`` (masks from ``reference_maps``
        when given, else the dataset's own store), in index order; ``progress(n)`` per chunk."""
        ...
