"""Backbone factory on timm, offline-first.

Pretrained weights come from a local file (``weights_path``: a timm/torch
state dict, adapted to ``in_chans`` by timm's own first-conv adaptation) or,
when ``pretrained=True`` and no path is given, from the Hugging Face hub
through timm's cache. Nothing is downloaded unless asked for.

With a ``head`` factory (``configs/model/head/``, e.g. BoostLU's CAM head) the timm
model is built without its classifier and the head maps its last feature map to
the logits (:mod:`spml_rs.heads`); without one the model is timm's classifier.

Label leak warning (docs/datasets_benv2.md): the published reBEN checkpoints were
trained with full reBEN labels; do not use them for SPML experiments on reBEN.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
from torch import nn

from spml_rs.heads import FeatureMapClassifier

#: ``head(num_features=D, num_classes=C)`` -> module mapping (B, D, H, W) to (B, C)
HeadFactory = Callable[..., nn.Module]


def create_backbone(
    *,
    name: str = "resnet18",
    in_chans: int = 3,
    num_classes: int = 19,
    pretrained: bool = False,
    weights_path: str | None = None,
    drop_rate: float = 0.0,
    stem_stride: int | None = None,
    head: HeadFactory | None = None,
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
        head: ``None`` (timm's own global pooling + linear classifier, the default), or a
            factory called with ``num_features`` and ``num_classes`` whose module maps the
            backbone's last (B, D, H, W) feature map to the logits; the backbone is then
            built with ``num_classes=0, global_pool=""`` (``drop_rate`` still applies to
            the feature map, in timm's ``forward_head``).
    """
    kwargs: dict[str, Any] = {
        "in_chans": in_chans,
        "num_classes": num_classes if head is None else 0,
        "drop_rate": drop_rate,
    }
    if head is not None:
        kwargs["global_pool"] = ""  # keep the spatial map: the head pools it
    model = _create_timm(name, pretrained=pretrained, weights_path=weights_path, kwargs=kwargs)
    if stem_stride is not None:
        _set_stem_stride(model, name, stem_stride)
    if head is None:
        return model
    return FeatureMapClassifier(
        backbone=model, head=head(num_features=model.num_features, num_classes=num_classes)
    )


def _create_timm(
    name: str, *, pretrained: bool, weights_path: str | None, kwargs: dict[str, Any]
) -> nn.Module:
    """timm's model, with weights from ``weights_path`` or the hub cache when ``pretrained``."""
    if pretrained and weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model.net.weights_path: no such file: {path}")
        return timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
    return timm.create_model(name, pretrained=pretrained, **kwargs)


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
