"""The pretraining world: synthetic scenes that stand in for ImageNet or self-supervised pretraining.

Real SPML users fine-tune a backbone that has already learnt generic remote-sensing
features; the clean patterns of the target are then learnt in a few epochs, and what
follows is the memorisation of the missing labels that single-positive methods exist to
stop. The synthetic benchmark gets that regime from a backbone pretrained, with full
labels, on *another* world (``dataset.datamodule.preset=pretrain``):

- the same physics as the target presets (:mod:`spml_rs.data.synthetic_scenes`: weighted
  Voronoi land-cover regions, smooth spectral curves per family, class textures, per-image
  illumination and sensor noise), so the features transfer;
- none of the target's content: 32 classes of its own in 12 spectral families and 8
  landscapes, and its own random stream for signatures and textures
  (:data:`PRETRAIN_WORLD_STREAM`), so no class, signature, texture or co-occurrence of a
  target preset is seen in pretraining, whatever the seeds.

The backbone is trained and cached by ``python -m spml_rs.pretrain``
(:mod:`spml_rs.pretrain`); this module holds the world and the file conventions, which
need no model: :func:`backbone_path`, :func:`backbone_state_dict` (a checkpoint's network
weights as a timm state dict without the classifier).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

#: class names of the pretraining world (disjoint from every target preset's)
PRETRAIN_CLASSES = tuple(f"pretraining class {k:02d}" for k in range(32))
#: spectral family of each class (12 families; classes of one family are hard to tell apart)
PRETRAIN_FAMILIES = (
    0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5, 5, 6,
    6, 7, 7, 8, 8, 8, 9, 9, 10, 10, 11, 11, 3, 6, 9, 11,
)  # fmt: skip
#: landscapes: (prior weight, member classes, most common first)
PRETRAIN_LANDSCAPES = (
    (0.18, (0, 3, 5, 8, 12, 17, 24)),
    (0.16, (1, 6, 9, 13, 20, 27, 30)),
    (0.14, (2, 4, 10, 14, 19, 25)),
    (0.12, (7, 11, 15, 21, 26, 31, 0)),
    (0.12, (16, 18, 22, 28, 1, 5)),
    (0.10, (23, 29, 12, 2, 8, 19)),
    (0.10, (30, 14, 26, 6, 10, 3)),
    (0.08, (31, 24, 17, 21, 9, 16, 28)),
)
#: salt of the world's random stream (signatures, textures, landscape weights): the target
#: presets use :data:`spml_rs.data.synthetic_scenes.TARGET_WORLD_STREAM`
PRETRAIN_WORLD_STREAM = 0x9E7A1A

#: where ``python -m spml_rs.pretrain`` writes the backbone, below the synthetic-data cache
BACKBONE_DIR = "pretrained"


def backbone_path(cache: Path, model_name: str) -> Path:
    """``<cache>/pretrained/synthetic_pretrain_<model>.pth`` (its recipe in the ``.json`` beside)."""
    return cache / BACKBONE_DIR / f"synthetic_pretrain_{model_name}.pth"


def backbone_state_dict(
    module_state: Mapping[str, torch.Tensor], *, prefix: str, classifier: str
) -> dict[str, torch.Tensor]:
    """The network's weights of a training checkpoint, as timm's model expects them.

    Args:
        module_state: the checkpoint's ``state_dict`` (the LightningModule's, keys
            ``<prefix><timm key>`` for the network, others for the loss and metrics).
        prefix: the network's key prefix, e.g. ``"net."``.
        classifier: timm's classifier module name (``pretrained_cfg["classifier"]``, e.g.
            ``"fc"``): dropped, since the pretraining classes are not the target's.

    Raises:
        ValueError: when no key carries ``prefix`` or none is left without the classifier
            (a checkpoint of another layout would otherwise load as nothing at all).
    """
    network = {k[len(prefix) :]: v for k, v in module_state.items() if k.startswith(prefix)}
    if not network:
        raise ValueError(f"checkpoint state_dict has no key starting with {prefix!r}")
    kept = {
        key: tensor.detach().clone()
        for key, tensor in network.items()
        if key.split(".", 1)[0] != classifier
    }
    if not kept or len(kept) == len(network):
        raise ValueError(
            f"checkpoint network: expected a classifier {classifier!r} next to other weights, "
            f"found keys {sorted(network)[:5]}..."
        )
    return kept
