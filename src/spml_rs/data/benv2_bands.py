"""reBEN band sets, the worker-side packed sample layout and its device-side decoding.

CPU workers only copy the bands of a patch, at native resolution, into one flat
byte buffer with a fixed layout (so a batch collates with a single stack). On
the device, :meth:`BandLayout.normalize` views each segment with its dtype and,
band by band for the whole batch at once, casts, standardises with the
published per-band statistics and upsamples the 20 m and 60 m bands to
120 x 120 into one output tensor in the band set's order
(:meth:`BandLayout.unpack`: the same without standardising).

Buffer layout (bytes, every segment a multiple of 4 long): S1 float32 120 x 120
bands, then S2 uint16 bands at 120, 60 and 20 px, each segment only when the
band set needs it. E.g. ``s2``: 4 x 28,800 + 6 x 7,200 = 158,400 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spml_rs.data.benv2_lmdb import (
    CorruptValueError,
    band_problem,
    check_band,
    corrupt_value,
    parse_header,
    split_header,
)
from spml_rs.data.recycled import RecycledArrays

SIDE = 120  # pixels of a 1.2 km patch at 10 m
S2_BANDS_BY_SIDE = {
    120: ("B02", "B03", "B04", "B08"),
    60: ("B05", "B06", "B07", "B8A", "B11", "B12"),
    20: ("B01", "B09"),
}
S1_BANDS = ("VV", "VH")
S2_BANDS_ALL = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")
_S2_10_BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
BAND_SETS: dict[str, tuple[str, ...]] = {
    "s2": _S2_10_BANDS,
    "s2_all": S2_BANDS_ALL,
    "s1": S1_BANDS,
    "s1s2": (*S1_BANDS, *_S2_10_BANDS),
}
#: Per-band (mean, std) of the reBEN train split at 120 px (nearest upsampling), from the
#: BigEarthNet team's ConfigILM library, file configilm/extra/BENv2_utils.py.
BAND_STATS: dict[str, tuple[float, float]] = {
    "B01": (361.0768, 575.0687), "B02": (438.3721, 607.0269), "B03": (614.0557, 603.2968),
    "B04": (588.4096, 684.5688), "B05": (942.8433, 738.4327), "B06": (1769.9316, 1100.4561),
    "B07": (2049.5515, 1275.8054), "B08": (2193.2920, 1369.3717), "B8A": (2235.5566, 1356.5441),
    "B09": (2241.4553, 1316.3933), "B11": (1568.2268, 1070.1613), "B12": (997.7325, 813.5276),
    "VH": (-19.3526, 5.5905), "VV": (-12.6439, 5.1335),
}  # fmt: skip
INTERPOLATIONS = ("nearest", "bilinear")


@dataclass(frozen=True)
class Segment:
    """Bands of one source, dtype and side, stored contiguously in the buffer."""

    source: str  # "s1" (key s1_name) or "s2" (key patch_id)
    bands: tuple[str, ...]
    dtype: str  # numpy dtype name
    side: int
    offset: int  # in bytes

    @property
    def nbytes(self) -> int:
        return len(self.bands) * self.side * self.side * np.dtype(self.dtype).itemsize


def _segments(bands: tuple[str, ...]) -> tuple[Segment, ...]:
    groups = [("s1", tuple(b for b in S1_BANDS if b in bands), "float32", SIDE)]
    groups += [
        ("s2", tuple(b for b in members if b in bands), "uint16", side)
        for side, members in S2_BANDS_BY_SIDE.items()
    ]
    segments, offset = [], 0
    for source, members, dtype, side in groups:
        if members:
            segments.append(Segment(source, members, dtype, side, offset))
            offset += segments[-1].nbytes
    return tuple(segments)


@dataclass(frozen=True)
class CopyPlan:
    """How one kind of LMDB value (one header) is copied into a packed sample.

    ``copies`` are (value offset, sample offset, length) byte ranges, adjacent
    bands merged (the official encoding stores B02-B04, B05-B07 and B11-B12
    next to each other); ``needed`` is the value length they read up to.
    """

    copies: tuple[tuple[int, int, int], ...]
    needed: int


class BandLayout:
    """The packed layout of one band set (see the module docstring).

    Args:
        band_set: ``s2`` (default of reBEN), ``s2_all``, ``s1`` or ``s1s2``.
        interpolation: ``nearest`` (default; the published statistics assume it)
            or ``bilinear``, for the 20 m and 60 m bands.
    """

    def __init__(self, band_set: str = "s2", interpolation: str = "nearest") -> None:
        if band_set not in BAND_SETS:
            raise ValueError(
                f"unknown reBEN band set {band_set!r}; choose from {sorted(BAND_SETS)}"
            )
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}"
            )
        self.band_set = band_set
        self.bands = BAND_SETS[band_set]
        self.interpolation = interpolation
        self.segments = _segments(self.bands)
        self.nbytes = sum(segment.nbytes for segment in self.segments)
        self.sources = tuple(dict.fromkeys(segment.source for segment in self.segments))
        #: (source, header bytes) -> CopyPlan: all patches of one kind share one header
        self._plans: dict[tuple[str, bytes], CopyPlan] = {}

    # ------------------------------------------------------------ worker side
    def pack(
        self, arrays: dict[str, dict[str, np.ndarray]], keys: dict[str, str], path: Path
    ) -> np.ndarray:
        """Copy the bands of one patch into a new (nbytes,) uint8 buffer.

        Args:
            arrays: source (``s1``/``s2``) -> decoded LMDB value (band -> array).
            keys: source -> LMDB key, for error messages.
            path: the LMDB, for error messages.
        """
        out = np.empty(self.nbytes, dtype=np.uint8)
        for seg in self.segments:
            view = out[seg.offset : seg.offset + seg.nbytes].view(seg.dtype)
            view = view.reshape(len(seg.bands), seg.side, seg.side)
            for i, band in enumerate(seg.bands):
                view[i] = check_band(
                    arrays[seg.source], band, np.dtype(seg.dtype), seg.side, keys[seg.source], path
                )
        return out

    def pack_value(
        self, source: str, value: memoryview, out: memoryview, key: str, path: Path
    ) -> None:
        """Copy the bands of ``source`` from one raw LMDB value into one packed sample.

        The batch reader's path: no safetensors decoding per sample. The value's
        header is parsed and checked once per distinct header (:class:`CopyPlan`);
        each value then costs a header comparison and one ``memcpy`` per run of
        adjacent bands, straight from the LMDB map into the batch.

        Args:
            source: ``s1`` or ``s2``.
            value: the LMDB value (a view into the map).
            out: the sample's (nbytes,) byte view in the batch.
            key, path: the LMDB key and file, for error messages.

        Raises:
            CorruptValueError: naming ``key`` and ``path`` for a value that is not a
                safetensors dict, lacks a band, or has one of the wrong dtype or size.
        """
        try:
            header, start = split_header(value)
            plan = self._plans.get((source, header))
            if plan is None:
                plan = self._plan(source, header, start, key, path)
            if len(value) < plan.needed:
                raise ValueError(f"its tensors end at byte {plan.needed} of {len(value)}")
        except CorruptValueError:
            raise
        except (ValueError, KeyError, TypeError) as error:
            raise corrupt_value(value, key, path, error) from error
        for begin, target, size in plan.copies:
            out[target : target + size] = value[begin : begin + size]

    def _plan(self, source: str, header: bytes, start: int, key: str, path: Path) -> CopyPlan:
        """Check a new header's bands against the layout and cache its :class:`CopyPlan`."""
        tensors = {name: (dtype, shape, begin, end) for name, dtype, shape, begin, end in
                   parse_header(header)}  # fmt: skip
        copies: list[list[int]] = []
        for seg in (seg for seg in self.segments if seg.source == source):
            band_bytes = seg.nbytes // len(seg.bands)
            for i, band in enumerate(seg.bands):
                spec = tensors.get(band)
                found = None if spec is None else (spec[0], spec[1])
                problem = band_problem(band, found, sorted(tensors), np.dtype(seg.dtype), seg.side)
                if problem:
                    raise CorruptValueError(f"LMDB {path}: key {key!r} {problem}")
                assert spec is not None
                begin, target = start + spec[2], seg.offset + i * band_bytes
                last = copies[-1] if copies else None
                if last and last[0] + last[2] == begin and last[1] + last[2] == target:
                    last[2] += band_bytes
                else:
                    copies.append([begin, target, band_bytes])
        needed = max(start + end for _, _, _, end in tensors.values())
        if len(self._plans) >= 64:  # a corrupt LMDB with many headers must not grow it
            self._plans.clear()
        plan = CopyPlan(tuple((b, t, n) for b, t, n in copies), needed)
        self._plans[(source, header)] = plan
        return plan

    def split(self, buffer: np.ndarray) -> dict[str, np.ndarray]:
        """Inverse of :meth:`pack` for one sample: band name -> native array (a view)."""
        bands: dict[str, np.ndarray] = {}
        for seg in self.segments:
            view = buffer[seg.offset : seg.offset + seg.nbytes].view(seg.dtype)
            view = view.reshape(len(seg.bands), seg.side, seg.side)
            bands.update(zip(seg.bands, view, strict=True))
        return bands

    # ------------------------------------------------------------ device side
    def unpack(self, buffer: torch.Tensor) -> torch.Tensor:
        """(B, nbytes) uint8 -> (B, C, 120, 120) float32 in band-set order, unnormalised."""
        return self._decode(buffer, normalize=False)

    def normalize(self, buffer: torch.Tensor) -> torch.Tensor:
        """Unpack, upsample and standardise with :data:`BAND_STATS`: (B, C, 120, 120).

        ``(x - mean_c) / std_c`` per band c, computed at the band's native
        resolution (before replication, so on 1/4 or 1/36 of the pixels for the
        20 m and 60 m bands when upsampling is nearest).
        """
        return self._decode(buffer, normalize=True)

    def _decode(self, buffer: torch.Tensor, normalize: bool) -> torch.Tensor:
        if buffer.dim() != 2 or buffer.shape[1] != self.nbytes or buffer.dtype != torch.uint8:
            raise ValueError(
                f"expected a (B, {self.nbytes}) uint8 batch of packed {self.band_set} patches, "
                f"got {tuple(buffer.shape)} {buffer.dtype}"
            )
        if buffer.device.type == "cpu":
            return self._decode_cpu(buffer, normalize)
        return self._decode_device(buffer, normalize)

    def _decode_device(self, buffer: torch.Tensor, normalize: bool) -> torch.Tensor:
        """GPU (any non-CPU device) path: one output allocation; each band is cast,
        scaled and replicated in place."""
        size = buffer.shape[0]
        out = torch.empty((size, len(self.bands), SIDE, SIDE), device=buffer.device)
        for seg in self.segments:
            raw = buffer[:, seg.offset : seg.offset + seg.nbytes].view(_TORCH_DTYPES[seg.dtype])
            raw = raw.view(size, len(seg.bands), seg.side, seg.side)
            if seg.side != SIDE and self.interpolation == "bilinear":
                # align_corners=False: consistent with the pixel areas of the two grids.
                raw = F.interpolate(
                    raw.float(), size=(SIDE, SIDE), mode="bilinear", align_corners=False
                )
            for j, band in enumerate(seg.bands):
                mean, std = BAND_STATS[band] if normalize else (0.0, 1.0)
                _write_band(out[:, self.bands.index(band)], raw[:, j], mean, std)
        return out

    def _decode_cpu(self, buffer: torch.Tensor, normalize: bool) -> torch.Tensor:
        """CPU path, equal to :meth:`_decode_device` (bit for bit with nearest upsampling).

        Two things make it fast on a CPU: the output is recycled memory
        (:mod:`spml_rs.data.recycled`: a fresh 40 MiB tensor per batch costs more in
        page faults than the arithmetic), and the 20/60 m bands are cast and
        standardised as one small (B, n, s, s) tensor per segment, then replicated
        through a cached scratch (a copy whose innermost dimension is a broadcast
        of length k = 2 or 6 runs element by element). With bilinear,
        standardising before interpolating is the same linear map, so it agrees
        with the device path to float rounding.
        """
        size = buffer.shape[0]
        out = _CPU_OUTPUTS.empty((size, len(self.bands), SIDE, SIDE))
        for seg in self.segments:
            raw = buffer[:, seg.offset : seg.offset + seg.nbytes].view(_TORCH_DTYPES[seg.dtype])
            raw = raw.view(size, len(seg.bands), seg.side, seg.side)
            channels = [self.bands.index(band) for band in seg.bands]
            if seg.side == SIDE:
                for j, channel in enumerate(channels):
                    target = out[:, channel]
                    target.copy_(raw[:, j])
                    if normalize:
                        mean, std = BAND_STATS[seg.bands[j]]
                        target.sub_(mean).div_(std)
                continue
            small = raw.float()
            if normalize:
                mean_t, std_t = self._segment_stats(seg)
                small.sub_(mean_t).div_(std_t)
            if self.interpolation == "bilinear":
                small = F.interpolate(
                    small, size=(SIDE, SIDE), mode="bilinear", align_corners=False
                )
                for j, channel in enumerate(channels):
                    out[:, channel].copy_(small[:, j])
            else:
                _replicate_nearest([out[:, channel] for channel in channels], small)
        return out

    def _segment_stats(self, seg: Segment) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 1, 1) float32 means and standard deviations of a segment's bands."""
        stats = torch.tensor([BAND_STATS[band] for band in seg.bands], dtype=torch.float32)
        return stats[:, 0].view(-1, 1, 1), stats[:, 1].view(-1, 1, 1)

    @cached_property
    def in_chans(self) -> int:
        return len(self.bands)


#: the CPU path's outputs (process-wide: any layout's batches of one shape share memory)
_CPU_OUTPUTS = RecycledArrays()


def _replicate_nearest(targets: list[torch.Tensor], source: torch.Tensor) -> None:
    """``targets[j]`` (B, S, S) = ``source[:, j]`` (B, s, s) repeated k = S / s times along y and x.

    Along x into a (B, s, S) scratch that stays in cache (k strided copies), then
    the scratch into the k rows of each target at once: every output cache line
    is written once, in order (writing the strided columns straight into the
    output touched each line k + 1 times and ran at half the speed).
    """
    size, _, side, _ = source.shape
    big = targets[0].shape[-1]
    factor = big // side
    wide = torch.empty((size, side, big), dtype=source.dtype)
    columns = wide.view(size, side, side, factor)
    for target, band in zip(targets, source.unbind(1), strict=True):
        for x in range(factor):
            columns[..., x].copy_(band)
        target.view(size, side, factor, big).copy_(wide[:, :, None, :].expand(-1, -1, factor, -1))


_TORCH_DTYPES = {"uint16": torch.uint16, "float32": torch.float32}


def _write_band(target: torch.Tensor, source: torch.Tensor, mean: float, std: float) -> None:
    """``target`` (B, S, S) = (``source`` (B, s, s) - mean) / std, replicated k = S / s times.

    Nearest-neighbour upsampling by an integer factor k needs no arithmetic:
    the first of every k output rows gets its source row repeated k times along
    x (a broadcast that also casts, e.g. uint16 -> float32), is standardised in
    place (1/k of the pixels), then copied into the other k - 1 rows. Keeping the innermost
    dimension contiguous makes both copies fast on CPU as well as on GPU.
    """
    size, side, big = source.shape[0], source.shape[-1], target.shape[-1]
    factor = big // side
    rows = target.view(size, side, factor, big)
    first = rows[:, :, 0, :].view(size, side, side, factor)
    first.copy_(source[..., None].expand(size, side, side, factor))
    if (mean, std) != (0.0, 1.0):
        first.sub_(mean).div_(std)
    if factor > 1:
        rows[:, :, 1:, :].copy_(rows[:, :, :1, :].expand(size, side, factor - 1, big))
