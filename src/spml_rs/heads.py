"""Classification heads on a backbone's last feature map: the model-side extension point.

A method that changes the *model* rather than the loss (BoostLU) picks a head in its
config (``configs/model/head/<name>.yaml``, selected from the method's defaults list
with ``- override /model/head: <name>``). :func:`spml_rs.models.create_backbone` then
builds the timm backbone without its classifier (``num_classes=0, global_pool=""``,
so it returns the (B, D, H, W) feature map) and calls the head factory with
``num_features=D`` and ``num_classes=C``. Without a head (``model/head: timm``, the
default) the model is timm's own classifier, unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureMapClassifier(nn.Module):
    """``head(backbone(image))``: (B, in_chans, H, W) -> (B, D, h, w) -> (B, C) logits.

    Args:
        backbone: a module returning its last feature map (a timm model created with
            ``num_classes=0, global_pool=""``).
        head: maps the (B, D, h, w) feature map to (B, C) logits.
    """

    def __init__(self, *, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.backbone(image)
        if features.ndim != 4:
            raise ValueError(
                f"model.net.head: {type(self.head).__name__} needs a (B, D, H, W) feature map, "
                f"but the backbone returned shape {tuple(features.shape)}; use a convolutional "
                "timm model (ResNet, ConvNeXt, EfficientNet, ...) or model/head=timm"
            )
        return self.head(features)


def boost_lu(cam: torch.Tensor, alpha: float) -> torch.Tensor:
    """BoostLU (Kim et al., CVPR 2023): alpha * x where x > 0, x elsewhere.

    Entry-wise on any tensor; equal to ``x + (alpha - 1) * relu(x)``. Its gradient is
    alpha on positive entries and 1 on the others; ``alpha = 1`` is the identity.
    """
    return torch.where(cam > 0, alpha * cam, cam)


class BoostedCAMHead(nn.Module):
    """Class activation map head with BoostLU (Kim et al., "Bridging the Gap between
    Model Explanations in Partially Annotated Multi-label Classification", CVPR 2023).

    CAM_c = W_c * F + b_c, a 1x1 convolution of the (B, D, H, W) feature map F
    (shape (B, C, H, W)); logit_c = GAP(BoostLU(CAM_c)) = mean over the H x W
    positions of alpha * max(CAM_c, 0) + min(CAM_c, 0). The boost raises the
    positive attributions of a model trained with false negatives (AN, LL) toward
    those of a fully supervised one.

    With ``alpha = 1`` this is GAP followed by a linear layer (the mean of a 1x1
    convolution is the linear map of the mean), i.e. timm's own head with the
    weight stored as (C, D, 1, 1) instead of (C, D). The convolution has PyTorch's
    default initialisation, the same distribution as ``nn.Linear``'s.

    The boost is part of the model: it applies in training, validation, test and
    prediction alike (docs/methods.md, "BoostLU at evaluation").

    Args:
        num_features: D, channels of the backbone's last feature map (set by the builder).
        num_classes: C, number of logits (set by the builder).
        alpha: boost of the positive CAM values, >= 1 (the paper's default 5).
    """

    def __init__(self, *, num_features: int, num_classes: int, alpha: float = 5.0) -> None:
        super().__init__()
        if alpha < 1.0:
            raise ValueError(
                f"model.net.head.alpha: BoostLU boosts positive attributions, so alpha must be "
                f">= 1 (1 is the plain CAM head), got {alpha}"
            )
        self.alpha = float(alpha)
        self.classifier = nn.Conv2d(num_features, num_classes, kernel_size=1)

    def class_activation_map(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D, H, W) features -> (B, C, H, W) CAM before the boost."""
        return self.classifier(features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return boost_lu(self.class_activation_map(features), self.alpha).mean(dim=(2, 3))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
