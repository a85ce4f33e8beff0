"""THE PREVIOUS IMPLEMENTATION of reBEN's device step, kept only as the benchmarks' baseline.

A verbatim copy of ``BandLayout._decode`` and ``_write_band`` from
``src/spml_rs/data/benv2_bands.py`` at commit 5f35a11 (before the CPU path and
the recycled outputs), so ``loader_benchmark.py`` measures "today's" step and
the new one in the same run. The library's GPU path is this same code
(``BandLayout._decode_device``); nothing in the library imports this file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spml_rs.data.benv2_bands import _TORCH_DTYPES, BAND_STATS, SIDE, BandLayout


def previous_decode(layout: BandLayout, buffer: torch.Tensor, normalize: bool) -> torch.Tensor:
    """One output allocation; each band is cast, scaled and replicated in place."""
    self = layout
    if buffer.dim() != 2 or buffer.shape[1] != self.nbytes or buffer.dtype != torch.uint8:
        raise ValueError(
            f"expected a (B, {self.nbytes}) uint8 batch of packed {self.band_set} patches, "
            f"got {tuple(buffer.shape)} {buffer.dtype}"
        )
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
