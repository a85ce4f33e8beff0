"""Synthetic land-cover scenes: a small, offline stand-in for BigEarthNet / AID.

Each image is a partition of the square into land-cover regions: a multiplicatively
weighted Voronoi diagram whose seeds carry a class. Which classes share an image
comes from a latent *landscape* (agricultural, forested, urban, coastal, ...), a
categorical distribution over classes; landscape priors and class weights are
skewed, which gives BigEarthNet-like co-occurrence and class imbalance. Pixels
take their class's spectral signature, modulated by a class-specific texture (a
mix of a smooth and a fine noise field), a per-image illumination and sensor
noise. Classes come in spectral families (e.g. the three forests) so that some are
hard to tell apart.

The label set of an image is every class covering more than ``min_area`` of it;
its dominant class is the one covering the most pixels (ties: lowest index). Full
labels and per-class areas are known, so every label mode works.

Everything is drawn from ``numpy.random.Generator`` streams seeded by
``(seed, split)`` and vectorised over images; the arrays are cached as ``.npz``
(:func:`load_or_generate`). The datamodule is :mod:`spml_rs.data.synthetic`.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from spml_rs.data.classes import AID17_CLASSES, BEN19_CLASSES
from spml_rs.data.pretraining import (
    PRETRAIN_CLASSES,
    PRETRAIN_FAMILIES,
    PRETRAIN_LANDSCAPES,
    PRETRAIN_WORLD_STREAM,
)
from spml_rs.data.verify import is_positive_int
from spml_rs.fileio import atomic_write_bytes

#: salt of the target presets' world stream (the pretraining world has its own)
TARGET_WORLD_STREAM = 0xC0FFEE

# Spectral families: classes in one family share a base signature.
_BEN19_FAMILIES = (0, 0, 1, 1, 2, 1, 2, 3, 3, 3, 3, 2, 4, 3, 5, 6, 6, 7, 7)
_AID17_FAMILIES = (0, 5, 0, 0, 4, 0, 0, 1, 2, 0, 0, 5, 7, 0, 0, 3, 7)

# Landscapes: (prior weight, classes that occur there). Index lists per preset.
_BEN19_LANDSCAPES = (
    (0.30, (2, 4, 5, 6, 0, 3, 7, 17)),  # agricultural plain
    (0.25, (8, 9, 10, 13, 6, 11, 17)),  # forest
    (0.12, (0, 1, 2, 4, 5, 17)),  # peri-urban
    (0.10, (18, 14, 16, 0, 2, 6)),  # coast
    (0.13, (11, 12, 13, 9, 15, 17)),  # upland
    (0.10, (15, 17, 10, 8, 4, 16)),  # wetland
)
_AID17_LANDSCAPES = (
    (0.30, (2, 3, 10, 15, 8, 1, 5)),  # town
    (0.15, (0, 10, 3, 8, 1, 2)),  # airport
    (0.15, (12, 13, 6, 11, 16, 2, 10)),  # harbour / beach
    (0.20, (7, 8, 15, 1, 16, 4)),  # countryside
    (0.10, (14, 10, 3, 1, 2, 9)),  # industrial
    (0.10, (4, 1, 11, 8, 15)),  # scrubland
)


@dataclass(frozen=True)
class ScenePreset:
    """Size and look of a synthetic dataset."""

    name: str
    class_names: tuple[str, ...]
    families: tuple[int, ...]
    landscapes: tuple[tuple[float, tuple[int, ...]], ...]
    num_bands: int
    image_size: int = 32
    num_train: int = 4000
    num_val: int = 1000
    num_test: int = 1000
    min_regions: int = 3
    max_regions: int = 9
    min_area: float = 0.05
    #: spectral distance between classes of one family (relative); smaller is harder
    class_spread: float = 0.06
    #: per-image, per-band multiplicative jitter (atmosphere, season); larger is harder
    band_jitter: float = 0.10
    #: additive sensor noise (relative to a signature of 1)
    noise: float = 0.08
    #: RGB presets mimic 8-bit aerial photos, multispectral ones 16-bit reflectance
    dtype: str = "uint16"
    #: salt of the world's random stream: a world of its own (pretraining) shares no draw
    world_stream: int = TARGET_WORLD_STREAM


#: name -> preset; positional fields: name, class_names, families, landscapes, num_bands
PRESETS = {
    preset.name: preset
    for preset in (
        ScenePreset("multispectral", BEN19_CLASSES, _BEN19_FAMILIES, _BEN19_LANDSCAPES, 10),
        ScenePreset("rgb", AID17_CLASSES, _AID17_FAMILIES, _AID17_LANDSCAPES, 3, dtype="uint8"),
        # the pretraining world (spml_rs.data.pretraining): 10 bands like multispectral
        ScenePreset(
            "pretrain",
            PRETRAIN_CLASSES,
            PRETRAIN_FAMILIES,
            PRETRAIN_LANDSCAPES,
            10,
            world_stream=PRETRAIN_WORLD_STREAM,
        ),
    )
}


#: the preset fields a dataset config may override
SIZE_KEYS = ("num_train", "num_val", "num_test", "image_size")


def sized_preset(name: str, **sizes: int | None) -> ScenePreset:
    """The preset ``name`` with the split sizes / ``image_size`` given (None keeps the preset's)."""
    if name not in PRESETS:
        raise ValueError(f"unknown synthetic preset {name!r}; choose from {sorted(PRESETS)}")
    unknown = sorted(set(sizes) - set(SIZE_KEYS))
    if unknown:
        raise ValueError(f"unknown synthetic size(s) {unknown}; expected some of {SIZE_KEYS}")
    given = {key: value for key, value in sizes.items() if value is not None}
    bad = {key: value for key, value in given.items() if not is_positive_int(value)}
    if bad:
        raise ValueError(f"synthetic sizes must be positive integers, got {bad}")
    return ScenePreset(**{**asdict(PRESETS[name]), **given})


def scene_ids(count: int) -> np.ndarray:
    """(count,) ids of a split's scenes: ``scene_000000``, ``scene_000001``, ..."""
    return np.array([f"scene_{i:06d}" for i in range(count)])


@dataclass
class SceneSplit:
    """Generated arrays of one split."""

    images: np.ndarray  # (N, bands, H, W) uint16 or uint8
    labels: np.ndarray  # (N, C) uint8
    areas: np.ndarray  # (N, C) float32 area fraction per class
    class_maps: np.ndarray  # (N, H, W) uint8 class per pixel

    @property
    def dominant(self) -> np.ndarray:
        return self.areas.argmax(axis=1)


class SceneWorld:
    """The fixed properties of a preset: signatures, textures, landscapes.

    Shared by all splits (drawn from ``seed`` alone), so val and test images
    come from the same distribution as train.
    """

    def __init__(self, preset: ScenePreset, seed: int) -> None:
        rng = np.random.default_rng([seed, preset.world_stream])
        num_classes, bands = len(preset.class_names), preset.num_bands
        num_families = max(preset.families) + 1
        # Smooth spectral curves per family; classes deviate mildly from their family.
        family_curves = np.cumsum(rng.normal(0.0, 0.25, (num_families, bands)), axis=1)
        family_curves += rng.uniform(0.3, 1.5, (num_families, 1))
        deviation = rng.normal(0.0, preset.class_spread, (num_classes, bands))
        self.signature = np.clip(family_curves[list(preset.families)] + deviation, 0.05, None)
        self.texture_amplitude = rng.uniform(0.05, 0.35, num_classes)
        self.texture_fine_weight = rng.uniform(0.0, 1.0, num_classes)
        # Class weight inside a landscape: Zipf-like, so each landscape has a few common classes.
        self.landscape_prior = np.array([w for w, _ in preset.landscapes])
        self.landscape_prior = self.landscape_prior / self.landscape_prior.sum()
        self.landscape_class_prob = np.zeros((len(preset.landscapes), num_classes))
        for k, (_, members) in enumerate(preset.landscapes):
            weights = 1.0 / np.arange(1, len(members) + 1) ** 0.8
            self.landscape_class_prob[k, list(members)] = weights / weights.sum()


def generate_split(preset: ScenePreset, seed: int, split: str, count: int) -> SceneSplit:
    """Generate ``count`` images of ``split`` (vectorised over images, in chunks)."""
    world = SceneWorld(preset, seed)
    rng = np.random.default_rng([seed, ("train", "val", "test").index(split) + 1])
    chunks = [_render_chunk(preset, world, rng, n) for n in _chunk_sizes(count, 512)]
    return SceneSplit(*(np.concatenate(parts) for parts in zip(*chunks, strict=True)))


def _chunk_sizes(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def _render_chunk(
    preset: ScenePreset, world: SceneWorld, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    size, num_classes = preset.image_size, len(preset.class_names)
    class_map = _voronoi_class_map(preset, world, rng, n)
    counts = np.stack([np.bincount(m.ravel(), minlength=num_classes) for m in class_map])
    areas = (counts / float(size * size)).astype(np.float32)
    labels = (areas > preset.min_area).astype(np.uint8)
    # The dominant class always covers more than min_area, so every image has a label.
    images = _render_pixels(preset, world, rng, class_map)
    return images, labels, areas, class_map.astype(np.uint8)


def _voronoi_class_map(
    preset: ScenePreset, world: SceneWorld, rng: np.random.Generator, n: int
) -> np.ndarray:
    """(n, H, W) class index per pixel from weighted Voronoi cells with warped edges."""
    size, k_max = preset.image_size, preset.max_regions
    landscape = rng.choice(len(world.landscape_prior), size=n, p=world.landscape_prior)
    cum = world.landscape_class_prob[landscape].cumsum(axis=1)  # (n, C)
    region_class = (rng.random((n, k_max, 1)) > cum[:, None, :]).sum(axis=2)
    region_class = np.minimum(region_class, len(preset.class_names) - 1)
    num_regions = rng.integers(preset.min_regions, k_max + 1, size=n)
    # Unused region slots get an infinite distance.
    active = np.arange(k_max)[None, :] < num_regions[:, None]
    centres = rng.random((n, k_max, 2)) * size
    weight = np.exp(rng.normal(0.0, 0.45, (n, k_max)))  # unequal cell sizes
    grid = np.arange(size, dtype=np.float32) + 0.5
    warp = _smooth_noise(rng, (n, 2), size, cells=3) * (size * 0.08)
    ys = grid[None, :, None] + warp[:, 0]  # (n, H, W)
    xs = grid[None, None, :] + warp[:, 1]
    dist = (ys[:, None] - centres[:, :, 0, None, None]) ** 2 + (
        xs[:, None] - centres[:, :, 1, None, None]
    ) ** 2
    dist = np.sqrt(dist) / weight[:, :, None, None]
    dist[~active] = np.inf
    owner = dist.argmin(axis=1)  # (n, H, W)
    return np.take_along_axis(region_class, owner.reshape(n, -1), axis=1).reshape(owner.shape)


def _smooth_noise(
    rng: np.random.Generator, lead: tuple[int, ...], size: int, cells: int
) -> np.ndarray:
    """Smooth random field: a coarse (cells x cells) grid upsampled bilinearly to size."""
    coarse = torch.from_numpy(rng.normal(0.0, 1.0, (*lead, cells, cells)).astype(np.float32))
    flat = coarse.reshape(-1, 1, cells, cells)
    fine = torch.nn.functional.interpolate(
        flat, size=(size, size), mode="bicubic", align_corners=False
    )
    return fine.reshape(*lead, size, size).numpy()


def _render_pixels(
    preset: ScenePreset, world: SceneWorld, rng: np.random.Generator, class_map: np.ndarray
) -> np.ndarray:
    n, size, _ = class_map.shape
    smooth = _smooth_noise(rng, (n,), size, cells=4)
    fine = _smooth_noise(rng, (n,), size, cells=size // 2)
    mix = world.texture_fine_weight[class_map]
    texture = world.texture_amplitude[class_map] * ((1 - mix) * smooth + mix * fine)
    signature = world.signature[class_map]  # (n, H, W, bands)
    # Global illumination times a per-band jitter: absolute spectra shift between images,
    # so classes of one family can only be told apart by texture and context.
    illumination = rng.normal(1.0, 0.08, (n, 1, 1, 1))
    illumination = illumination * rng.normal(1.0, preset.band_jitter, (n, 1, 1, preset.num_bands))
    value = signature * (1.0 + texture[..., None]) * illumination
    value += rng.normal(0.0, preset.noise, value.shape)
    value = np.moveaxis(value, -1, 1)  # channels first
    if preset.dtype == "uint8":
        return np.clip(value * 100.0, 0, 255).astype(np.uint8)
    return np.clip(value * 1500.0, 1, 65535).astype(np.uint16)


def cache_dir(root: str | Path | None) -> Path:
    """Directory for generated artefacts (default ``~/.cache/spml_rs``)."""
    path = Path(root) if root else Path.home() / ".cache" / "spml_rs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_or_generate(
    preset: ScenePreset, seed: int, root: str | Path | None
) -> dict[str, SceneSplit]:
    """All three splits, from the on-disk cache when present."""
    fingerprint = hashlib.sha1(
        json.dumps({**asdict(preset), "seed": seed, "v": 1}, sort_keys=True).encode()
    ).hexdigest()[:12]
    folder = cache_dir(root) / "synthetic" / f"{preset.name}-{fingerprint}"
    counts = {"train": preset.num_train, "val": preset.num_val, "test": preset.num_test}
    splits: dict[str, SceneSplit] = {}
    for split, count in counts.items():
        path = folder / f"{split}.npz"
        if path.is_file():
            with np.load(path) as data:
                splits[split] = SceneSplit(**{key: data[key] for key in data.files})
            continue
        splits[split] = generate_split(preset, seed, split, count)
        buffer = io.BytesIO()
        np.savez(buffer, **asdict(splits[split]))
        atomic_write_bytes(path, buffer.getvalue())  # concurrent processes never see half a file
    return splits
