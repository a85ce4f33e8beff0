"""Backbone factory on timm, offline-first.

Pretrained weights come from a local file (``weights_path``: a timm/torch
state dict, adapted to ``in_chans`` by timm's own first-conv adaptation) or,
when ``pretrained=True`` and no path is given, from the Hugging Face hub
through timm's cache. Nothing is downloaded unless asked for.

Label leak warning (docs/datasets_benv2.md): the published reBEN checkpoints were
trained with full reBEN labels; do not use them for SPML experiments on reBEN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
from torch import nn


def create_backbone(
    *,
    name: str = "resnet18",
    in_chans: int = 3,
    num_classes: int = 19,
    pretrained: bool = False,
    weights_path: str | None = None,
    drop_rate: float = 0.0,
    stem_stride: int | None = None,
) -> nn.Module:
    """A timm classifier with ``in_chans`` inputs and a ``num_classes`` logit head.

    Args:
        name: any timm model name (``timm.list_models()``).
        in_chans: input channels (10 for reBEN ``s2``, 3 for AID).
        num_classes: number of logits.
        pretrained: load weights (from ``weights_path`` if given, else timm's hub cache).
        weights_path: local checkpoint; its classifier is dropped, the first
            convolution is adapted to ``in_chans`` by timm.
        drop_rate: dropout before the classifier.
        stem_stride: for ResNet-like models on small synthetic patches (32 px),
            set the stem convolution's stride (1 keeps spatial detail); ``None``
            keeps timm's stem.
    """
    kwargs: dict[str, Any] = {
        "in_chans": in_chans,
        "num_classes": num_classes,
        "drop_rate": drop_rate,
    }
    if pretrained and weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.weights_path: no such file: {path}")
        model = timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
    else:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    if stem_stride is not None:
        _set_stem_stride(model, name, stem_stride)
    return model


def _set_stem_stride(model: nn.Module, name: str, stride: int) -> None:
    """Reduce early downsampling so a 32 px patch is not squeezed to 1 px too early."""
    conv = getattr(model, "conv1", None)
    if isinstance(conv, nn.Sequential):  # deep-stem variants (resnet10t, resnet26d, ...)
        conv = conv[0]
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(
            f"model.stem_stride is only supported for ResNet-like models, not {name!r}"
        )
    conv.stride = (stride, stride)
    if isinstance(getattr(model, "maxpool", None), nn.MaxPool2d) and stride == 1:
        model.maxpool = nn.Identity()
