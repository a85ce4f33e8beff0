"""Time per training step: AdaGC in stage 2 (teacher forward, temporal EMA, Mixup, GC loss,
teacher update) against Assume Negative, same data, model and batch size, in one process.

    python benchmarks/adagc_overhead.py [--steps 20] [--repeats 3] [--batch-size 64]
        [--accelerator cpu|gpu] [--precision 32-true|bf16-mixed] [override ...]

Each repeat fits two epochs of ``--steps`` batches per method (AdaGC with
``early_learning.fixed=1``, so the second epoch is stage 2) and times the
second epoch: the interval between consecutive training-batch starts, which
includes loading, every callback and the optimiser step. Methods alternate
(an, adagc, an, adagc, ...) so a shared machine's load affects both alike. The
median over all timed steps of all repeats is reported, with images per second.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
from hydra.core.global_hydra import GlobalHydra

from spml_rs import api, builders


class StepTimer(L.Callback):
    """Record the time between consecutive training-batch starts of the last epoch."""

    def __init__(self, timed_epoch: int) -> None:
        self.timed_epoch = timed_epoch
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if trainer.current_epoch == self.timed_epoch:
            self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
        if trainer.current_epoch == self.timed_epoch:
            self.starts.append(time.perf_counter())

    def step_times(self) -> list[float]:
        gaps = [b - a for a, b in zip(self.starts, self.starts[1:], strict=False)]
        return gaps[1:]  # the first step of an epoch pays for the loader start


def run(method: str, args: argparse.Namespace, out: Path) -> list[float]:
    overrides = [
        f"method={method}",
        f"dataset.datamodule.num_train={args.steps * args.batch_size}",
        "dataset.datamodule.num_val=64",
        "dataset.datamodule.num_test=64",
        f"dataset.datamodule.batch_size={args.batch_size}",
        "trainer.max_epochs=2",
        f"trainer.accelerator={args.accelerator}",
        f"trainer.precision={args.precision}",
        "+trainer.limit_val_batches=0",
        "+trainer.enable_checkpointing=false",
        "~callbacks",
        "logger=none",
        *(["method.callbacks.early_learning.fixed=1"] if method.startswith("adagc") else []),
        *args.overrides,
    ]
    GlobalHydra.instance().clear()
    cfg = api.compose(overrides, output_dir=out)
    L.seed_everything(0)
    datamodule = builders.build_datamodule(cfg)
    module = builders.build_module(cfg, datamodule.info())
    timer = StepTimer(timed_epoch=1)
    trainer = builders.build_trainer(cfg, [timer, *builders.build_callbacks(cfg)], [])
    trainer.fit(module, datamodule=datamodule)
    if method.startswith("adagc") and module.loss.stage != 2:  # type: ignore[union-attr]
        raise RuntimeError("AdaGC did not reach stage 2 in the timed epoch")
    return timer.step_times()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--method", default="adagc", help="the AdaGC config to time")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"an": [], args.method: []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for method in times:
                times[method] += run(method, args, Path(tmp) / f"{method}-{repeat}")
    medians = {m: statistics.median(t) for m, t in times.items()}
    for method, median in medians.items():
        print(
            f"{method:>12}: median {1000 * median:8.1f} ms/step over {len(times[method])} steps, "
            f"{args.batch_size / median:8.1f} images/s"
        )
    print(f"ratio {args.method}/an: {medians[args.method] / medians['an']:.2f}x (target <= 1.4x)")


if __name__ == "__main__":
    main()
