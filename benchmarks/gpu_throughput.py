#!/usr/bin/env python3
"""Training throughput on reBEN: fed from memory (the limit) against the real pipeline, AdaGC against AN.

One run prints one table. It writes a synthetic reBEN LMDB in the official encoding
(``make_benv2_lmdb``, S2 only), composes the real training config
(``dataset=benv2``, ``model=resnet50`` on 120 px patches with the 10 bands of
``s2``, ``trainer.precision=bf16-mixed``, ``label_mode=random``) and fits each of

* AN, fed from memory: ``--cached`` batches read once (pinned when CUDA is there)
  and cycled, then the usual transfer, device step and training step: the limit;
* AN, fed by the real pipeline: the datamodule's loader on the LMDB with
  ``num_workers`` = CPUs - 1, ``pin_memory``, persistent workers;
* AdaGC in stage 2 (``early_learning.fixed=1``), fed from memory;

for two epochs of ``--steps`` steps and times the second (synchronised with the
device at both ends). It reports images/s, ms per step, peak device memory and the
ratios (goals: pipeline >= 90 % of the limit, AdaGC <= 1.3x AN's step time).

    python benchmarks/gpu_throughput.py                      # on a GPU machine (~3 min)
    python benchmarks/gpu_throughput.py --tiny               # CPU smoke run (seconds)
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from make_benv2_lmdb import write_synthetic_benv2
from omegaconf import DictConfig

from spml_rs import api, builders
from spml_rs.data.benv2 import BENv2DataModule

FEEDS = (("memory", "an"), ("pipeline", "an"), ("memory", "adagc"))


class CachedBatches:
    """``steps`` batches per epoch cycled from a few batches held in (pinned) memory."""

    def __init__(self, batches: list[dict[str, torch.Tensor]], steps: int) -> None:
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for step in range(self.steps):
            yield self.batches[step % len(self.batches)]


class InMemoryFeed(BENv2DataModule):
    """The reBEN datamodule whose training batches come from memory, not from the LMDB."""

    cached = 4
    steps = 1

    def train_dataloader(self) -> Any:
        loader = iter(super().train_dataloader())
        pin = torch.cuda.is_available()
        batches = [
            {k: v.pin_memory() if pin else v for k, v in next(loader).items()}
            for _ in range(self.cached)
        ]
        return CachedBatches(batches, self.steps)


class EpochTimer(L.Callback):
    """Seconds of training epoch ``timed``, the device synchronised at both ends."""

    def __init__(self, timed: int) -> None:
        self.timed = timed
        self.seconds = float("nan")
        self._start = 0.0

    @staticmethod
    def _sync(module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.timed:
            self._sync(pl_module)
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.timed:
            self._sync(pl_module)
            self.seconds = time.perf_counter() - self._start


@dataclass
class Run:
    """What one fit measured."""

    feed: str
    method: str
    images_per_s: float
    ms_per_step: float
    peak_mib: float | None


def config(args: argparse.Namespace, root: Path, method: str, out: Path) -> DictConfig:
    """The training config of one run (the packaged configs and a few overrides)."""
    overrides = [
        "dataset=benv2",
        f"dataset.datamodule.root={root}",
        f"dataset.datamodule.batch_size={args.batch_size}",
        f"dataset.datamodule.num_workers={args.workers}",
        "dataset.datamodule.verify=none",
        f"model={args.model}",
        *(["model.net.name=test_resnet"] if args.tiny else []),
        f"method={method}",
        f"trainer={'gpu' if args.accelerator == 'gpu' else 'cpu'}",
        "trainer.precision=bf16-mixed",
        "trainer.max_epochs=2",
        f"+trainer.limit_train_batches={args.steps}",
        "+trainer.limit_val_batches=0",
        "+trainer.enable_checkpointing=false",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "~callbacks",
        "logger=none",
        *(["method.callbacks.early_learning.fixed=1"] if method == "adagc" else []),
    ]
    GlobalHydra.instance().clear()
    cfg = api.compose(overrides, output_dir=out)
    return cfg


def fit(args: argparse.Namespace, root: Path, feed: str, method: str, out: Path) -> Run:
    """Fit two epochs; time the second."""
    cfg = config(args, root, method, out)
    L.seed_everything(0)
    if feed == "memory":
        datamodule = instantiate(cfg.dataset.datamodule, _target_=f"{__name__}.InMemoryFeed")
        datamodule.cached, datamodule.steps = args.cached, args.steps
    else:
        datamodule = builders.build_datamodule(cfg)
    module = builders.build_module(cfg, datamodule.info())
    timer = EpochTimer(timed=1)
    trainer = builders.build_trainer(cfg, [timer, *builders.build_callbacks(cfg)], [])
    cuda = torch.cuda.is_available() and args.accelerator == "gpu"
    if cuda:  # the previous run's module and trainer hold cycles: free them first
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, datamodule=datamodule)
    if method == "adagc" and module.loss.stage != 2:  # type: ignore[union-attr]
        raise RuntimeError("AdaGC did not reach stage 2 in the timed epoch")
    steps = trainer.fit_loop.epoch_loop.batch_progress.current.completed
    if steps != args.steps:
        raise RuntimeError(f"the timed epoch ran {steps} steps, expected {args.steps}")
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    seconds = timer.seconds
    return Run(feed, method, args.steps * args.batch_size / seconds, 1000 * seconds / steps, peak)


def device_name(args: argparse.Namespace) -> str:
    if args.accelerator == "gpu" and torch.cuda.is_available():
        return (
            f"{torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
        )
    return f"CPU ({os.cpu_count()} cores)"


def report(args: argparse.Namespace, runs: list[Run]) -> dict[str, float]:
    """Print the table and the ratios; return the ratios."""
    print(
        f"\n{device_name(args)}; model {args.model}{' (test_resnet)' if args.tiny else ''}, 10 bands, "
        f"120 px, bf16-mixed, batch {args.batch_size}, {args.steps} timed steps, "
        f"{args.workers} loader workers; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(
        f"  {'feed':<9s} {'method':<7s} {'images/s':>10s} {'ms/step':>9s} {'peak device MiB':>16s}"
    )
    for run in runs:
        peak = "n/a (CPU)" if run.peak_mib is None else f"{run.peak_mib:.0f}"
        print(
            f"  {run.feed:<9s} {run.method:<7s} {run.images_per_s:10.1f} {run.ms_per_step:9.1f} "
            f"{peak:>16s}"
        )
    by = {(r.feed, r.method): r for r in runs}
    ratios = {
        "pipeline_over_memory": by[("pipeline", "an")].images_per_s
        / by[("memory", "an")].images_per_s,
        "adagc_over_an": by[("memory", "adagc")].ms_per_step / by[("memory", "an")].ms_per_step,
    }
    print(f"  pipeline / in-memory limit: {ratios['pipeline_over_memory']:.1%} (goal >= 90%)")
    print(f"  AdaGC stage 2 / AN step time: {ratios['adagc_over_an']:.2f}x (goal <= 1.3x)")
    return ratios


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU-sized smoke run")
    parser.add_argument("--batch-size", type=int, default=None, help="default 256 (tiny: 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 60, tiny 2)")
    parser.add_argument("--patches", type=int, default=None, help="default: enough for 2 epochs")
    parser.add_argument("--workers", type=int, default=None, help="default: CPUs - 1")
    parser.add_argument("--cached", type=int, default=4, help="batches held in memory")
    parser.add_argument("--model", default=None, help="model config (default resnet50)")
    parser.add_argument("--accelerator", default=None, help="gpu when CUDA is there, else cpu")
    parser.add_argument("--work", type=Path, default=None, help="keep the LMDB here")
    args = parser.parse_args(argv)
    args.batch_size = args.batch_size or (4 if args.tiny else 256)
    args.steps = args.steps or (2 if args.tiny else 60)
    args.model = args.model or ("resnet_small" if args.tiny else "resnet50")
    args.accelerator = args.accelerator or ("gpu" if torch.cuda.is_available() else "cpu")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    args.workers = args.workers if args.workers is not None else max(1, (cpus or 2) - 1)
    # train is about half of the generated rows: an epoch of steps reads distinct rows
    args.patches = args.patches or int(2.2 * args.steps * args.batch_size) + 64
    return args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_throughput_"))
    root = work / "benv2"
    try:
        if not root.exists():
            start = time.perf_counter()
            write_synthetic_benv2(root, args.patches, sources=("s2",))
            print(f"wrote {args.patches} patches in {time.perf_counter() - start:.0f} s")
        runs = [fit(args, root, feed, method, work / f"{feed}-{method}") for feed, method in FEEDS]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return report(args, runs)


if __name__ == "__main__":
    main()
