"""Multi-band GeoTIFF patches for prediction, read with rasterio (``pip install spml_rs[geotiff]``).

A folder holds one file per patch, ``<id>.tif`` (or ``.tiff``), each with every band
on one grid. Bands are identified by name, never by position: from the file's band
descriptions (``rasterio``'s ``descriptions``; GDAL's ``-mo``/``SetDescription``,
``rio edit-info --bidx 1 --description B02``), or, for files without them, from
``band_names`` (their order in every file). A file that lacks a band the model was
trained on, names one twice, or has another size than the training patches is an
error naming the file and the expected and found bands or size. When the file's
CRS is projected in metres, its pixel size must be the 10 m of the training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

GEOTIFF_SUFFIXES = (".tif", ".tiff")
PIXEL_SIZE_M = 10.0


class GeoTIFFBandError(ValueError):
    """A GeoTIFF patch does not hold the bands, size or pixel size the model needs."""


def _rasterio() -> Any:
    try:
        import rasterio
    except ImportError as error:  # an optional dependency: the geotiff extra
        raise ImportError(
            "reading GeoTIFF patches needs rasterio: pip install 'spml_rs[geotiff]'"
        ) from error
    return rasterio


def file_band_names(descriptions: Sequence[str | None], path: Path) -> list[str]:
    """Band names from a file's descriptions (upper case); every band must have one."""
    missing = [i + 1 for i, d in enumerate(descriptions) if not d]
    if missing:
        raise GeoTIFFBandError(
            f"{path}: band(s) {missing} have no description, so their band names are unknown; "
            "set the descriptions (e.g. rio edit-info --bidx 1 --description B02 FILE) or give "
            "band_names=[B02,B03,...] (the file order)"
        )
    return [str(d).strip().upper() for d in descriptions]


def band_indexes(found: Sequence[str], wanted: Sequence[str], path: Path) -> list[int]:
    """1-based indexes, in ``wanted``'s order, of the bands named ``found`` in the file."""
    twice = sorted({b for b in found if list(found).count(b) > 1})
    absent = [b for b in wanted if b not in found]
    if twice or absent:
        problem = f"names {twice} more than once" if twice else f"lacks {absent}"
        raise GeoTIFFBandError(
            f"{path}: the file {problem}. The model was trained on the bands {list(wanted)} "
            f"(in this order); the file's bands are {list(found)}"
        )
    return [list(found).index(b) + 1 for b in wanted]


def geotiff_files(folder: Path) -> dict[str, Path]:
    """``{id: path}`` of the GeoTIFF files directly in ``folder``, sorted by id (the file stem)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in GEOTIFF_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no {'/'.join(GEOTIFF_SUFFIXES)} files")
    found: dict[str, Path] = {}
    for path in files:
        if path.stem in found:
            raise GeoTIFFBandError(
                f"{folder}: patch id {path.stem!r} twice: {found[path.stem]}, {path}"
            )
        found[path.stem] = path
    return found


def read_patch(
    path: Path, bands: Sequence[str], side: int, band_names: Sequence[str] | None = None
) -> np.ndarray:
    """The ``bands`` of the GeoTIFF ``path``, in that order: float32 (len(bands), side, side).

    Args:
        path: a multi-band GeoTIFF.
        bands: the trained band order (upper case), e.g. ``("B02", ..., "B12")``.
        side: the patch size the model was trained on (120 px for reBEN).
        band_names: the bands of files without descriptions, in file order; where a file
            has descriptions they win, and must name the bands.
    """
    rasterio = _rasterio()
    with rasterio.open(path) as src:
        described = any(src.descriptions)
        if described or band_names is None:
            found = file_band_names(src.descriptions, path)
        else:
            found = [b.upper() for b in band_names]
            if len(found) != src.count:
                raise GeoTIFFBandError(
                    f"{path}: band_names lists {len(found)} bands, the file has {src.count}"
                )
        indexes = band_indexes(found, bands, path)
        if (src.height, src.width) != (side, side):
            raise GeoTIFFBandError(
                f"{path}: {src.height} x {src.width} px; the model was trained on {side} x {side} "
                f"px patches at {PIXEL_SIZE_M:g} m: cut larger scenes into such patches first"
            )
        _check_pixel_size(src, path)
        return np.asarray(src.read(indexes, out_dtype="float32"))


def _check_pixel_size(src: Any, path: Path) -> None:
    crs = src.crs
    if crs is None or not crs.is_projected or crs.linear_units not in ("metre", "meter"):
        return  # no CRS, or degrees: the size is not in metres, nothing to compare
    x, y = (abs(float(v)) for v in src.res)
    if not (np.isclose(x, PIXEL_SIZE_M, rtol=0.01) and np.isclose(y, PIXEL_SIZE_M, rtol=0.01)):
        raise GeoTIFFBandError(
            f"{path}: pixels of {x:g} x {y:g} m; the model was trained on {PIXEL_SIZE_M:g} m "
            "pixels (resample the patch to the 10 m grid first)"
        )
