"""Pinned class lists of the supported datasets and the reBEN CLC-code mapping.

reBEN (BigEarthNet v2.0; Clasen et al., arXiv 2407.03653) uses the 19-class
nomenclature of BigEarthNet (Sumbul et al., 2021), derived from CORINE Land
Cover (CLC) level-3 codes. The project pins the original CLC-like order (as
TorchGeo); the alphabetical order used by ConfigILM and the published reBEN
checkpoints is reachable through :func:`ben19_alphabetical_permutation`, never
switched silently.
"""

from __future__ import annotations

import numpy as np

BEN19_CLASSES = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)
AID17_CLASSES = (
    "airplane", "bare-soil", "buildings", "cars", "chaparral", "court", "dock", "field",
    "grass", "mobile-home", "pavement", "sand", "sea", "ship", "tanks", "trees", "water",
)  # fmt: skip

#: CLC level-3 codes of each of the 19 classes, in the pinned order.
BEN19_CLC_CODES: tuple[tuple[int, ...], ...] = (
    (111, 112), (121,), (211, 212, 213), (221, 222, 223, 241), (231,), (242,), (243,),
    (244,), (311,), (312,), (313,), (321, 333), (322, 323), (324,), (331,), (411, 412),
    (421, 422), (511, 512), (521, 522, 523),
)  # fmt: skip
#: Index that :func:`clc_lookup_table` gives nodata (0) and every code of no class (CLC's
#: unlabelled 122 123 124 131 132 133 141 142 332 334 335 423 999, or any other).
NO_CLASS = len(BEN19_CLASSES)

#: The same 19 names sorted alphabetically (ConfigILM, BIFOLD reBEN checkpoints).
BEN19_ALPHABETICAL = tuple(sorted(BEN19_CLASSES))


def ben19_alphabetical_permutation() -> np.ndarray:
    """Index array ``perm`` with ``BEN19_ALPHABETICAL[j] == BEN19_CLASSES[perm[j]]``.

    ``x[..., perm]`` turns a (..., 19) array in the pinned order (our labels,
    logits) into the alphabetical order; ``y[..., np.argsort(perm)]`` goes back,
    e.g. to read the logits of a checkpoint trained in the alphabetical order.
    """
    position = {name: i for i, name in enumerate(BEN19_CLASSES)}
    return np.array([position[name] for name in BEN19_ALPHABETICAL], dtype=np.int64)


def clc_lookup_table() -> np.ndarray:
    """(65536,) uint8 table: CLC code (a uint16 reference-map pixel) -> class index.

    Nodata (0), the unlabelled codes and any code outside the nomenclature map
    to :data:`NO_CLASS`, so ``table[reference_map]`` is a class map in one gather.
    """
    table = np.full(1 << 16, NO_CLASS, dtype=np.uint8)
    for index, codes in enumerate(BEN19_CLC_CODES):
        table[list(codes)] = index
    return table


def class_pixel_counts(reference_maps: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """Pixels per class of each reference map, vectorised over the batch.

    Args:
        reference_maps: (N, H, W) uint16 CLC codes.
        table: the output of :func:`clc_lookup_table` (built when omitted).

    Returns:
        (N, 19) int64 pixel counts; nodata and unlabelled pixels are not counted.
    """
    table = clc_lookup_table() if table is None else table
    classes = table[reference_maps].reshape(len(reference_maps), -1).astype(np.int64)
    width = NO_CLASS + 1
    # One bincount over (row, class) pairs instead of one per image.
    flat = classes + width * np.arange(len(reference_maps))[:, None]
    counts = np.bincount(flat.ravel(), minlength=width * len(reference_maps))
    return counts.reshape(len(reference_maps), width)[:, :NO_CLASS]
