"""What the model and the methods may know about a dataset before training.

A leaf module on purpose: a loss imports :class:`DatasetInfo` without pulling in
Lightning, pyarrow or any dataset code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """Classes, input channels and training-set statistics of a dataset."""

    name: str
    class_names: tuple[str, ...]
    in_chans: int
    num_train_samples: int
    #: mean number of true labels per training image (oracle statistic, e.g. EPR's k)
    mean_positives_per_image: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
