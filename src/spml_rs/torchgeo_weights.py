"""Sentinel-2 pretrained backbones from TorchGeo, mapped onto reBEN's band sets.

TorchGeo (``pip install -e ".[torchgeo]"``) publishes remote-sensing weights for timm
models, e.g. ``ResNet50_Weights.SENTINEL2_ALL_MOCO`` (SSL4EO-S12, MoCo v2, 13
Sentinel-2 L1C bands B1..B12 with B8A and B10, inputs divided by 10,000). Three
things must agree before they fit a reBEN model (docs/pretrained_weights.md):

* **Bands, by name.** The first layer's input channels are picked in the order of
  our band set (``s2``: 10 bands, ``s2_all``: 12); channels of bands we do not have
  (B10, cirrus, absent from L2A; also B1 and B9 for ``s2``) are dropped. A band of
  ours the weights lack (VV, VH of ``s1s2``) is an error, or a zero-initialised
  channel with ``unmatched_bands: zero``.
* **Normalisation.** Our datamodule standardises each band with reBEN's statistics,
  z = (x - m) / s; the weights expect u = (x - M) / S (TorchGeo's ``transforms``:
  M = 0, S = 10,000). :class:`WeightsInputAdapter` turns z into u exactly, per band:
  u = (s / S) z + (m - M) / S, before the first layer.
* **Architecture.** The state dict is loaded into the timm model; only timm's
  classifier may be missing from it.

Offline: ``model.net.weights_path`` names the ``.pth`` file TorchGeo downloads
(``$TORCH_HOME/hub/checkpoints/``, default ``~/.cache/torch/hub/checkpoints/``);
then torchgeo need not be installed. Without it, the file is fetched through
``torchgeo.models.get_weight(weights).get_state_dict()``, and the weights' own
band list and normalisation are checked against the config first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spml_rs.data.benv2_bands import BAND_SETS, BAND_STATS
from spml_rs.heads import FeatureMapClassifier
from spml_rs.models import HeadFactory, create_backbone

UNMATCHED = ("error", "zero")
_S2_BAND = re.compile(r"^B0*(\d{1,2})(A?)$")


def canonical_band(name: str) -> str:
    """One spelling per band: ``B01``/``B1`` -> ``B1``, ``B8a``/``B8A`` -> ``B8A``; SAR as is."""
    match = _S2_BAND.match(name.strip().upper())
    return f"B{int(match.group(1))}{match.group(2)}" if match else name.strip().upper()


def band_indices(
    bands: Sequence[str], weights_bands: Sequence[str], unmatched: str = "error"
) -> list[int | None]:
    """For each of ``bands`` (in order) the index of the same band among ``weights_bands``.

    A band the weights lack is an error, or ``None`` (a new channel) with
    ``unmatched="zero"``. Weight bands not in ``bands`` are simply not picked.
    """
    if unmatched not in UNMATCHED:
        raise ValueError(f"model.net.unmatched_bands must be one of {UNMATCHED}, got {unmatched!r}")
    lookup = {canonical_band(b): i for i, b in enumerate(weights_bands)}
    if len(lookup) != len(weights_bands):
        raise ValueError(f"model.net.weights_bands names a band twice: {list(weights_bands)}")
    indices = [lookup.get(canonical_band(b)) for b in bands]
    missing = [b for b, i in zip(bands, indices, strict=True) if i is None]
    if missing and unmatched == "error":
        raise ValueError(
            f"the pretrained weights have no input channel for band(s) {missing} "
            f"(their bands: {list(weights_bands)}); choose a band set they cover, or set "
            "model.net.unmatched_bands=zero to start those channels at zero"
        )
    return indices


def first_layer_key(state: dict[str, torch.Tensor], num_bands: int) -> str:
    """The one 4-D weight whose input dimension is the weights' band count (``conv1.weight``)."""
    keys = [k for k, v in state.items() if v.ndim == 4 and v.shape[1] == num_bands]
    if len(keys) != 1:
        raise ValueError(
            f"expected exactly one convolution with {num_bands} input channels (one per band "
            f"of model.net.weights_bands) in the pretrained state dict, found {keys}"
        )
    return keys[0]


def select_input_channels(
    state: dict[str, torch.Tensor], indices: Sequence[int | None], num_bands: int
) -> dict[str, torch.Tensor]:
    """A copy of ``state`` whose first layer has one input channel per entry of ``indices``
    (``None``: zeros), in that order."""
    key = first_layer_key(state, num_bands)
    weight = state[key]
    picked = [weight[:, i] if i is not None else torch.zeros_like(weight[:, 0]) for i in indices]
    return {**state, key: torch.stack(picked, dim=1).contiguous()}


def _per_band(value: float | Sequence[float], count: int, key: str) -> torch.Tensor:
    values = torch.as_tensor(value, dtype=torch.float64).flatten()
    if values.numel() == 1:
        values = values.expand(count)
    if values.numel() != count:
        raise ValueError(
            f"model.net.{key}: one value or {count} (one per weight band), got {value}"
        )
    return values


class WeightsInputAdapter(nn.Module):
    """``net(scale * z + shift)``: our standardised bands to the weights' input scale.

    With z = (x - m) / s (reBEN statistics) and the weights' u = (x - M) / S,
    scale = s / S and shift = (m - M) / S per band; both are buffers (C,), not trained.
    Applied before the first layer, so it is exact, zero padding included.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, *, net: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("scale", scale.float().view(1, -1, 1, 1).clone())
        self.register_buffer("shift", shift.float().view(1, -1, 1, 1).clone())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image * self.scale + self.shift)


def input_conversion(
    bands: Sequence[str],
    indices: Sequence[int | None],
    weights_mean: torch.Tensor,
    weights_std: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per band of ours; a new (zero) channel gets (1, 0)."""
    scale, shift = torch.ones(len(bands)), torch.zeros(len(bands))
    for c, (band, i) in enumerate(zip(bands, indices, strict=True)):
        if i is None:
            continue
        mean, std = BAND_STATS[band]
        scale[c] = std / weights_std[i]
        shift[c] = (mean - weights_mean[i]) / weights_std[i]
    return scale, shift


def torchgeo_normalization(transforms: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(M, S) of u = (x - M) / S from the ``Normalize`` steps of TorchGeo's ``transforms``
    (chained steps composed); ``None`` if it has none."""
    mean, std = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    found = False
    for module in transforms.modules():
        if type(module).__name__ != "Normalize":
            continue
        flags = getattr(module, "flags", {})  # kornia keeps them there; torchvision as attributes
        m = torch.as_tensor(flags.get("mean", getattr(module, "mean", 0.0)), dtype=torch.float64)
        s = torch.as_tensor(flags.get("std", getattr(module, "std", 1.0)), dtype=torch.float64)
        mean, std = mean + m.flatten() * std, std * s.flatten()  # ((x - M) / S - m) / s
        found = True
    return (mean, std) if found else None


def _check_against_torchgeo(
    weights: Any, weights_bands: Sequence[str], mean: torch.Tensor, std: torch.Tensor
) -> None:
    """The config must describe the weights TorchGeo serves: same bands, same normalisation."""
    theirs = [canonical_band(b) for b in weights.meta.get("bands", [])]
    if theirs != [canonical_band(b) for b in weights_bands]:
        raise ValueError(
            f"model.net.weights_bands {list(weights_bands)} differ from {weights}'s bands "
            f"{weights.meta.get('bands')}; copy TorchGeo's list, in its order"
        )
    normalization = torchgeo_normalization(weights.transforms)
    if normalization is None:
        raise ValueError(
            f"{weights}.transforms has no Normalize step: set weights_mean/std by hand"
        )
    count = len(weights_bands)
    their_mean, their_std = (_per_band(v.tolist(), count, "weights") for v in normalization)
    if not (torch.allclose(their_mean, mean) and torch.allclose(their_std, std)):
        raise ValueError(
            f"model.net.weights_mean/std ({mean.tolist()}, {std.tolist()}) differ from "
            f"{weights}'s normalisation ({their_mean.tolist()}, {their_std.tolist()})"
        )


def load_pretrained_state(
    weights: str, weights_path: str | None, weights_bands: Sequence[str], mean: Any, std: Any
) -> dict[str, torch.Tensor]:
    """The weights' state dict: from ``weights_path``, else through TorchGeo (download)."""
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.net.weights_path: no such file: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        return dict(state.get("state_dict", state))
    try:
        from torchgeo.models import get_weight
    except ImportError as error:
        raise ImportError(
            f"model.net.weights={weights} needs TorchGeo to download: pip install -e "
            "'.[torchgeo]', or set model.net.weights_path to the downloaded .pth file"
        ) from error
    resolved = get_weight(weights)
    _check_against_torchgeo(resolved, weights_bands, mean, std)
    return dict(resolved.get_state_dict(progress=True))


def load_into(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into the timm model of ``net``; only timm's classifier may be missing."""
    model = net.backbone if isinstance(net, FeatureMapClassifier) else net
    classifier = str(getattr(model, "default_cfg", {}).get("classifier", "fc"))
    state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    fits = f"the pretrained state dict does not fit model.net.name={model.__class__.__name__}"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches (e.g. a ResNet-18 file for a ResNet-50)
        raise ValueError(f"{fits}: {str(error).splitlines()[1].strip()} ...") from error
    missing = [k for k in missing if not k.startswith(f"{classifier}.")]
    if missing or unexpected:
        raise ValueError(f"{fits}: missing {missing[:5]}, unexpected {unexpected[:5]}")


def create_torchgeo_backbone(
    *,
    weights: str,
    weights_bands: Sequence[str],
    weights_mean: float | Sequence[float] = 0.0,
    weights_std: float | Sequence[float] = 10000.0,
    bands: str | None = None,
    unmatched_bands: str = "error",
    match_normalization: bool = True,
    name: str = "resnet50",
    in_chans: int = 10,
    num_classes: int = 19,
    pretrained: bool = True,
    weights_path: str | None = None,
    drop_rate: float = 0.0,
    stem_stride: int | None = None,
    head: HeadFactory | None = None,
) -> nn.Module:
    """:func:`~spml_rs.models.create_backbone` with TorchGeo weights mapped onto ``bands``.

    Args:
        weights: a ``torchgeo.models`` weights name, e.g. ``ResNet50_Weights.SENTINEL2_ALL_MOCO``.
        weights_bands: the weights' input bands in order (TorchGeo's ``meta["bands"]``).
        weights_mean, weights_std: their normalisation u = (x - mean) / std, one value or
            one per weight band (TorchGeo's ``transforms``).
        bands: our band set (``dataset.datamodule.bands``: ``s2``, ``s2_all``, ...); needed
            with ``pretrained``; ``None`` (a dataset without band names) builds the
            architecture only.
        unmatched_bands: ``error`` or ``zero`` for a band of ours the weights lack.
        match_normalization: convert our standardised input to the weights' scale
            (:class:`WeightsInputAdapter`); ``false`` feeds it as it is.
        name, in_chans, num_classes, pretrained, weights_path, drop_rate, stem_stride, head:
            as in :func:`~spml_rs.models.create_backbone`; ``weights_path`` is the local
            ``.pth`` of ``weights`` (offline use).
    """
    net = create_backbone(
        name=name, in_chans=in_chans, num_classes=num_classes, drop_rate=drop_rate,
        stem_stride=stem_stride, head=head,
    )  # fmt: skip
    if not pretrained:
        return net
    if bands is None or bands not in BAND_SETS:
        raise ValueError(
            f"model.net.bands={bands!r}: TorchGeo weights are mapped by band name, so they need "
            f"a reBEN band set {sorted(BAND_SETS)} (dataset=benv2, dataset.datamodule.bands)"
        )
    ours = BAND_SETS[bands]
    if len(ours) != in_chans:
        raise ValueError(f"model.net.bands={bands} has {len(ours)} bands, the data {in_chans}")
    mean = _per_band(weights_mean, len(weights_bands), "weights_mean")
    std = _per_band(weights_std, len(weights_bands), "weights_std")
    indices = band_indices(ours, weights_bands, unmatched_bands)
    state = load_pretrained_state(weights, weights_path, weights_bands, mean, std)
    load_into(net, select_input_channels(state, indices, len(weights_bands)))
    if not match_normalization:
        return net
    scale, shift = input_conversion(ours, indices, mean, std)
    return WeightsInputAdapter(net=net, scale=scale, shift=shift)
