"""AID-multilabel datamodule: ``dataset=aid`` (``docs/datasets_aid.md``).

The files (label CSV, image folders, validation carve-out) are :class:`AIDIndex`'s.
Workers only decode images to uint8 (B, 3, H, W); resizing to ``image_size``
(bilinear, antialiased) and ImageNet normalisation run batched on the device in
:meth:`AIDDataModule.normalize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import simplejpeg
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2.functional import resize

from spml_rs.data.aid_index import AIDFormatError, AIDIndex, AIDSplit, header_problem, image_header
from spml_rs.data.base import SPMLDataModule
from spml_rs.data.splits import SplitDataset
from spml_rs.data.verify import Failures, collect

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from spml_rs.data.base import DataModuleOptions

#: ImageNet statistics on the 0-255 scale (images stay uint8 until the device).
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class AIDImages(SplitDataset):
    """Images decoded to uint8 (3, H, W); resized in the worker only if sizes differ.

    Args:
        size: (height, width) every image leaves the worker with; None means the
            size of the split's first image (AID's images all share one size).
    """

    def __init__(
        self, split: AIDSplit, targets: np.ndarray, size: tuple[int, int] | None = None
    ) -> None:
        super().__init__(split.ids, split.labels, targets)
        self.paths = split.paths
        self.size = image_header(self.paths[0]) if size is None else size

    def read_image(self, index: int) -> np.ndarray:
        try:
            image = decode(self.paths[index])
        except (OSError, RuntimeError, ValueError) as err:
            raise AIDFormatError(f"AID: cannot decode image {self.paths[index]}: {err}") from err
        if tuple(image.shape[1:]) != self.size:
            image = resize(image, list(self.size), antialias=True)  # uint8 in, uint8 out
        return image.numpy()


#: JPEG colour spaces libjpeg-turbo cannot turn into RGB; PIL converts them
_NOT_TO_RGB = ("CMYK", "YCCK")


def decode(path: str) -> torch.Tensor:
    """RGB uint8 (3, H, W) of an image file.

    JPEGs go through simplejpeg (libjpeg-turbo, bundled in its wheels; no tie to the
    torch build): PIL's pixels exactly, and faster (``benchmarks/decoder_benchmark.py``,
    ``docs/datasets_aid.md``). torchvision's ``decode_jpeg``, used before, is deprecated
    since torchvision 0.29. CMYK/YCCK JPEGs and the other formats go through PIL.
    A damaged file raises ``ValueError`` (simplejpeg) or ``OSError`` (PIL); callers add the path.
    """
    if path.lower().endswith((".jpg", ".jpeg")):
        with open(path, "rb") as file:
            data = file.read()
        if simplejpeg.decode_jpeg_header(data)[2] not in _NOT_TO_RGB:
            rgb = simplejpeg.decode_jpeg(data, colorspace="RGB")
            return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


class AIDDataModule(SPMLDataModule[AIDIndex]):
    """AID-multilabel with Full, Random and Manual single-positive settings.

    Args:
        root, label_file, fallback_label_file, val_fraction, val_size, val_seed: the
            files and the validation carve-out, see :class:`AIDIndex`.
        image_size: side of the square the device resizes batches to (bilinear,
            antialiased); None keeps the decoded size.
        decode_size: side of the square images leave the workers with; None means
            the native size (resizing in workers only happens if sizes differ).
        **options: label mode and loader settings, see :class:`SPMLDataModule`.
    """

    index_class = AIDIndex
    unreadable_hint = (
        "replace these files (AID's images are RGB JPEGs), or remove them and their rows "
        "from the label CSV"
    )

    def __init__(
        self,
        *,
        root: str,
        label_file: str | None = None,
        fallback_label_file: str = "multilabel.csv",
        val_fraction: float = 0.20125,
        val_size: int | None = None,
        val_seed: int = 0,
        image_size: int | None = 224,
        decode_size: int | None = None,
        **options: Unpack[DataModuleOptions],
    ) -> None:
        # The index's parameters are named like ours (DatasetIndex.from_config).
        index = AIDIndex.from_config(locals())
        super().__init__(index, **options)
        self.image_size = image_size
        self.decode_size = decode_size
        self._stats: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def in_chans(self) -> int:
        return 3

    def prepare_data(self) -> None:
        # Validate the folder once, in the main process, before any worker starts.
        self.index.split("train")

    def check_files(self, splits: Sequence[str]) -> None:
        """``verify=keys``: the header of every image of ``splits`` decodes, with the path."""
        failures = Failures("verify=keys: image headers")
        for split in splits:
            paths = self.index.split(split).paths
            problems = collect(paths, header_problem, split, "checking image headers")
            failures.add(split, len(paths), problems)
        failures.raise_if_any(self.unreadable_hint)

    def _build_split(self, split: str, targets: np.ndarray | None) -> SplitDataset:
        data = self.index.split(split)
        observed = data.labels.astype(np.int8) if targets is None else targets
        size = None if self.decode_size is None else (self.decode_size, self.decode_size)
        return AIDImages(data, observed, size)

    # ------------------------------------------------------------ on device
    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float (B, 3, S, S): bilinear antialiased resize, ImageNet norm."""
        image = image.float()
        size = self.image_size
        if size is not None and tuple(image.shape[-2:]) != (size, size):
            image = F.interpolate(
                image, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        mean, std = self._imagenet_stats(image.device)
        return (image - mean) / std

    def _imagenet_stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._stats is None or self._stats[0].device != device:
            shape = (1, 3, 1, 1)
            self._stats = (
                torch.tensor(IMAGENET_MEAN, device=device).view(shape),
                torch.tensor(IMAGENET_STD, device=device).view(shape),
            )
        return self._stats
