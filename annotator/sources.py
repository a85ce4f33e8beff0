"""Image sources of the annotator: ids, class names and a picture per id.

A source knows one dataset's files. It lists the image ids of a split in dataset
order and returns the bytes the browser shows for an id. Ids are the only thing
a request can name: every lookup goes through the id table built here, so a
URL can never choose a path (see :meth:`AIDSource.image`).

* AID-multilabel: the image files under ``images_tr/<Scene>/`` (train) or
  ``images_test/`` (test), found as ``dataset=aid`` finds them; JPEG and PNG are
  served unchanged (no re-encoding: small and fast over an SSH tunnel).
* reBEN: ids, split and LMDB as ``dataset=benv2`` finds them (``metadata.parquet``,
  official LMDB: key = patch id, value = safetensors dict of bands); true colour
  from B04/B03/B02 with a per-band 2-98 % percentile stretch, rendered to PNG in
  memory and enlarged by the page with sharp pixels.
* synthetic: the scenes of :class:`spml_rs.data.synthetic.SceneCache`,
  colour from three bands, stretched like reBEN.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
from PIL import Image

from spml_rs.data.aid_index import SPLIT_FOLDERS, AIDIndex


class UnknownImage(KeyError):
    """The requested id is not an image of this source."""


@dataclass(frozen=True)
class Picture:
    """Encoded image bytes and their MIME type."""

    data: bytes
    mimetype: str


class ImageSource(Protocol):
    """What the annotator needs from a dataset."""

    name: str
    class_names: tuple[str, ...]
    image_ids: tuple[str, ...]
    #: images are small (e.g. 120 px): the page enlarges them with sharp pixels
    pixelated: bool

    def image(self, image_id: str) -> Picture:
        """The picture of ``image_id``; :class:`UnknownImage` if it is not in the source."""
        ...


def percentile_stretch(bands: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Map (3, H, W) values to (H, W, 3) uint8, per band from its ``low``..``high`` percentiles.

    A robust stretch: a few saturated or dark pixels (clouds, nodata) do not
    flatten the rest. Zeros (Sentinel-2 nodata) are left out of the percentiles
    when the band has other values.
    """
    out = np.empty((*bands.shape[1:], 3), dtype=np.uint8)
    for c, band in enumerate(np.asarray(bands, dtype=np.float64)):
        valid = band[band != 0] if np.any(band != 0) else band.ravel()
        lo, hi = np.percentile(valid, [low, high])
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        out[..., c] = np.clip((band - lo) * scale, 0, 255).astype(np.uint8)
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode (H, W, 3) uint8 to PNG in memory (fast compression: latency over size)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class ArraySource:
    """A source whose images are arrays: ids, classes and a band reader."""

    pixelated = True

    def __init__(
        self,
        name: str,
        class_names: Sequence[str],
        image_ids: Sequence[str],
        read_rgb_bands: Callable[[str], np.ndarray],
    ) -> None:
        self.name = name
        self.class_names = tuple(class_names)
        self.image_ids = tuple(image_ids)
        self._known = frozenset(self.image_ids)
        self._read = read_rgb_bands

    def image(self, image_id: str) -> Picture:
        if image_id not in self._known:
            raise UnknownImage(image_id)
        return Picture(png_bytes(percentile_stretch(self._read(image_id))), "image/png")


class AIDSource:
    """AID-multilabel images: ``<root>/images_tr/<Scene>/<id>.<ext>`` (``images_test`` for test).

    Found by :class:`spml_rs.data.aid_index.AIDIndex`, as ``dataset=aid`` finds them
    (no label CSV needed). JPEGs and PNGs are served as they are; other formats
    (TIFF) are re-encoded to PNG, which every browser shows.
    """

    pixelated = False
    SPLITS: ClassVar[dict[str, tuple[str, ...]]] = {
        "train": ("train",),
        "test": ("test",),
        "all": ("train", "test"),
    }
    SERVED_AS_IS: ClassVar[dict[str, str]] = {
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".png": "image/png",
    }

    def __init__(self, root: str | Path, split: str = "train") -> None:
        if split not in self.SPLITS:
            raise ValueError(f"AID split must be one of {sorted(self.SPLITS)}, got {split!r}")
        index = AIDIndex(Path(root).resolve())
        self.name = index.name
        self.class_names = index.class_names
        self.root = index.root
        self._paths: dict[str, Path] = {}
        for official in self.SPLITS[split]:
            for image_id, path in self._scan(index, official).items():
                previous = self._paths.setdefault(image_id, path)
                if previous != path:
                    raise ValueError(
                        f"AID image id {image_id!r} is in two files: {previous}, {path}"
                    )
        self.image_ids = tuple(sorted(self._paths, key=_natural_key))

    @staticmethod
    def _scan(index: AIDIndex, official: str) -> dict[str, Path]:
        missing = f"no AID images under {index.root}: expected {SPLIT_FOLDERS[official]}/<Scene>/"
        try:
            found = index.images(official)
        except FileNotFoundError as error:
            raise FileNotFoundError(missing) from error
        if not found:
            raise FileNotFoundError(missing)
        return found

    def image(self, image_id: str) -> Picture:
        path = self._paths.get(image_id)
        if path is None:
            raise UnknownImage(image_id)
        # The table only holds files found under the root; resolve again so a symlink
        # planted later cannot lead outside it.
        real = path.resolve()
        if not real.is_relative_to(self.root) or not real.is_file():
            raise UnknownImage(image_id)
        mimetype = self.SERVED_AS_IS.get(real.suffix.lower())
        if mimetype is not None:
            return Picture(real.read_bytes(), mimetype)
        from spml_rs.data.aid import decode

        rgb = decode(str(real)).permute(1, 2, 0).numpy()
        return Picture(png_bytes(np.ascontiguousarray(rgb)), "image/png")


def _natural_key(image_id: str) -> tuple[str, int]:
    """``airport_2`` before ``airport_10``."""
    stem, _, number = image_id.rpartition("_")
    return (stem, int(number)) if number.isdigit() else (image_id, -1)


def benv2_source(
    root: str | Path,
    split: str = "train",
    lmdb_name: str | None = None,
    metadata_name: str = "metadata.parquet",
) -> ArraySource:
    """reBEN patches of ``split``, exactly those ``dataset=benv2`` trains on.

    Ids, split and LMDB location come from :class:`spml_rs.data.benv2_index.BENv2Index`
    (``metadata.parquet``; the official single LMDB or the per-split ones).

    Args:
        root: folder with ``metadata.parquet`` and the LMDB(s) (``dataset.datamodule.root``).
        split: ``train``, ``val`` or ``test``.
        lmdb_name, metadata_name: as ``dataset.datamodule.lmdb_name`` / ``metadata_name``.
    """
    from spml_rs.data.benv2_index import BENv2Index
    from spml_rs.data.benv2_lmdb import decode_value

    index = BENv2Index(root, lmdb_name=lmdb_name, metadata_name=metadata_name)
    ids = [str(i) for i in index.split(split).patch_ids]
    database = index.database(split)

    def read(image_id: str) -> np.ndarray:
        try:
            value = database.get(image_id)
        except KeyError as error:
            raise UnknownImage(image_id) from error
        bands = decode_value(value, image_id, database.path)
        return np.stack([bands[name] for name in ("B04", "B03", "B02")])

    return ArraySource(index.name, index.class_names, ids, read)


def synthetic_source(
    root: str | Path | None,
    split: str = "train",
    preset: str = "multispectral",
    seed: int = 0,
    sizes: dict[str, int | None] | None = None,
) -> ArraySource:
    """Scenes of the synthetic preset, exactly those ``dataset=synthetic`` trains on.

    ``root`` is the cache folder (``paths.cache_dir``); ``sizes`` overrides
    ``num_train``/``num_val``/``num_test``/``image_size`` like the dataset config.
    """
    from spml_rs.data.synthetic import SceneCache
    from spml_rs.data.synthetic_scenes import sized_preset

    scenes = SceneCache(sized_preset(preset, **(sizes or {})), seed=seed, root=root or None)
    ids, _ = scenes.split_labels(split)
    images = scenes.scenes[split].images
    # Multispectral bands are in ESA order (B02 B03 B04 ...): bands 2, 1, 0 mimic true colour.
    channels = [2, 1, 0] if images.shape[1] >= 3 and preset != "rgb" else [0, 1, 2]
    position = {str(image_id): i for i, image_id in enumerate(ids)}
    return ArraySource(
        scenes.name, scenes.class_names, list(position), lambda i: images[position[i]][channels]
    )
