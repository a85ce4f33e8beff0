"""Pretrain the synthetic benchmark's backbone: ``python -m spml_rs.pretrain [--overwrite] [overrides]``.

Trains ``configs/experiment/pretrain_backbone.yaml`` (full labels on the pretraining world,
:mod:`spml_rs.data.pretraining`) with the library's own training loop, so the run is
seeded, shows Lightning's progress bar, can be resumed (its run directory is kept), and
picks its checkpoint on the pretraining world's validation mAP. The checkpoint's network
is then written, without its classifier, as a timm state dict:

    <cache>/pretrained/synthetic_pretrain_<model>.pth     the weights (model.net.weights_path)
    <cache>/pretrained/synthetic_pretrain_<model>.json    recipe, fingerprint, validation mAP, sha256
    <cache>/pretrained/runs/<model>-<fingerprint>/        the pretraining run

``<cache>`` is ``paths.cache_dir`` (``$SPML_RS_CACHE``, default ``~/.cache/spml_rs``), where
the synthetic scenes are cached too; ``experiment=benchmark_pretrained`` reads the file from
there. A second call with the same recipe only prints the path; a different recipe (other
overrides) is refused while the file exists, unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spml_rs import runtime

# Before torch is imported: libgomp reads its wait policy once, when it loads.
runtime.prefer_passive_openmp_waiting()

import timm  # noqa: E402
import torch  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from spml_rs.api import compose  # noqa: E402
from spml_rs.data.pretraining import backbone_path, backbone_state_dict  # noqa: E402
from spml_rs.data.synthetic_scenes import cache_dir  # noqa: E402
from spml_rs.fileio import atomic_write_bytes, atomic_write_text  # noqa: E402
from spml_rs.train import train  # noqa: E402

EXPERIMENT = "experiment=pretrain_backbone"
#: the config parts that decide the weights (paths, loggers and callbacks do not)
RECIPE_KEYS = ("seed", "dataset", "label_mode", "model", "method", "trainer.max_epochs")
#: keys inside those parts that only say where or how fast: not part of the recipe
NOT_RECIPE = {
    "dataset": ("root", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor"),
    "model": ("channels_last", "compile"),
}


def recipe(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config parts that decide the weights, without the cache location."""
    parts: dict[str, Any] = {}
    for key in RECIPE_KEYS:
        value = OmegaConf.select(cfg, key)
        parts[key] = (
            OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        )
    for name in NOT_RECIPE["dataset"]:
        parts["dataset"]["datamodule"].pop(name, None)
    for name in NOT_RECIPE["model"]:
        parts["model"].pop(name, None)
    return parts


def fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def pretrained_backbone(overrides: Sequence[str] = (), *, overwrite: bool = False) -> Path:
    """The cached backbone of the recipe (``pretrain_backbone`` + ``overrides``), trained if absent.

    Raises:
        FileExistsError: the file exists with another recipe and ``overwrite`` is false.
    """
    probe = compose([EXPERIMENT, *overrides])
    parts = recipe(probe)
    key = fingerprint(parts)
    cache = cache_dir(probe.paths.cache_dir)
    weights = backbone_path(cache, str(probe.model.net.name))
    sidecar = weights.with_suffix(".json")
    if weights.is_file() and not overwrite:
        stored = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
        if stored.get("fingerprint") == key:
            return weights
        raise FileExistsError(
            f"{weights} was pretrained with another recipe (fingerprint "
            f"{stored.get('fingerprint', 'unknown')}, this one {key}; see {sidecar}); "
            "pass --overwrite to replace it"
        )
    run_dir = cache / "pretrained" / "runs" / f"{probe.model.net.name}-{key}"
    cfg = compose([EXPERIMENT, *overrides], output_dir=run_dir)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the path only: $(python -m ...)
        metrics = train(cfg)
    best = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["best_checkpoint"]
    state = _export(Path(best), str(cfg.model.net.name))
    atomic_write_bytes(weights, _serialise(state))
    summary = {
        "fingerprint": key,
        "recipe": parts,
        "val/best_mAP_macro": _number(metrics.get("val/best_mAP_macro")),
        "checkpoint": best,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    atomic_write_text(sidecar, json.dumps(summary, indent=2) + "\n")
    return weights


def _export(checkpoint: Path, model_name: str) -> dict[str, torch.Tensor]:
    """The checkpoint's network as a timm state dict without timm's classifier."""
    module_state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    pretrained_cfg = timm.models.get_pretrained_cfg(model_name)
    if pretrained_cfg is None or not isinstance(pretrained_cfg.classifier, str):
        raise ValueError(f"model.net.name={model_name!r}: timm names no single classifier for it")
    return backbone_state_dict(module_state, prefix="net.", classifier=pretrained_cfg.classifier)


def _serialise(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spml_rs.pretrain", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a backbone of another recipe"
    )
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides of experiment=pretrain_backbone"
    )
    args = parser.parse_args(argv)
    runtime.configure_threads()
    try:
        path = pretrained_backbone(args.overrides, overwrite=args.overwrite)
    except FileExistsError as error:
        print(f"pretrain: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
