#!/usr/bin/env python3
"""reBEN loading per CPU worker: ours, the decode floor, the previous device step and the peers, one run.

Writes N real-size random patches (12 S2 bands, uint16, native 120/60/20 px) as
the official LMDB and as the raw reBEN folders (``benv2_readers.make_patches``),
then measures samples/s of one process (``num_workers=0``, one torch thread,
batches of ``--batch-size``, band set ``s2_all``), medians of ``--repeats``
passes over all N after a warm-up pass (page cache warm for every reader):

* the decode floor: LMDB get + safetensors decode per sample, nothing else;
* (a') ours, worker part: the training loader (``BatchReads``: a batch of indices
  per fetch, bands copied from the LMDB map into one batch tensor);
* the per-sample path with ``default_collate`` (how the loader read before);
* (a) ours, worker part + the device step run on the CPU (``BandLayout.normalize``),
  and the same with the previous device step (``previous_device_step.py``);
* TorchGeo's ``BigEarthNetV2`` (the installed package), TorchGeo's image read and a
  tifffile reader reimplemented with a choice of resampling, and ConfigILM's
  ``BENv2DataSet`` read path reimplemented (its package cannot be installed here).

Every reader's first batch is checked against ours first (same values and band
order; per-reader tolerances in ``benv2_readers``). A second table times the
device step alone, previous against current, for nearest and bilinear.

    pip install -e ".[bench]" torchgeo
    python benchmarks/loader_benchmark.py --patches 512 --repeats 5
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benv2_readers import STD, Reader, decode_floor, make_patches, missing_packages, peer_readers
from previous_device_step import previous_decode
from torch.utils.data import DataLoader

from spml_rs.data.benv2 import BENv2Dataset
from spml_rs.data.benv2_bands import BandLayout
from spml_rs.data.benv2_index import SplitIndex
from spml_rs.data.benv2_lmdb import LazyLMDB
from spml_rs.data.splits import BatchReads, pass_batch

FLOOR = "decode floor: LMDB get + safetensors decode per sample"
WORKER = "(a') ours, worker part: batch reads (device step on the GPU)"
PER_SAMPLE = "ours, per-sample reads + default_collate (the previous loader)"
WITH_STEP = "(a) ours, worker + device step on the CPU"
WITH_OLD_STEP = "(a) ours, worker + the previous device step on the CPU"


def load_average() -> str:
    """The 1/5/15-minute load averages, to tell an idle machine from a busy one."""
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def our_dataset(path: Path, ids: list[str], mode: str) -> BENv2Dataset:
    """The library's reBEN dataset on the generated LMDB (band set ``s2_all``)."""
    index = SplitIndex(np.array(ids), np.ones((len(ids), 19), dtype=np.uint8), None)
    return BENv2Dataset(
        index, index.labels.astype(np.int8), LazyLMDB(path), BandLayout("s2_all", mode)
    )


def loader_pass(
    loader: DataLoader[Any], finish: Callable[[Any], torch.Tensor]
) -> Callable[[], int]:
    """One pass over ``loader``, each batch finished; returns the number of samples."""

    def one_pass() -> int:
        return sum(finish(batch).shape[0] for batch in loader)

    return one_pass


def rate(one_pass: Callable[[], int], repeats: int) -> float:
    """Median samples/s of ``repeats`` passes, after a warm-up pass."""
    one_pass()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = one_pass()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def our_rows(dataset: BENv2Dataset, batch: int) -> dict[str, Callable[[], int]]:
    """Our four rows: worker part (batch reads and per sample), and with either device step."""
    batches = DataLoader(BatchReads(dataset), batch_size=batch, collate_fn=pass_batch)
    per_sample = DataLoader(dataset, batch_size=batch)
    layout = dataset.layout
    return {
        WORKER: loader_pass(batches, lambda b: b["image"]),
        PER_SAMPLE: loader_pass(per_sample, lambda b: b["image"]),
        WITH_STEP: loader_pass(batches, lambda b: layout.normalize(b["image"])),
        WITH_OLD_STEP: loader_pass(batches, lambda b: previous_decode(layout, b["image"], True)),
    }


def check_readers(dataset: BENv2Dataset, readers: dict[str, Reader], batch: int) -> None:
    """Every reader's first batch equals ours within its tolerance (in DN)."""
    packed = dataset.read_batch(list(range(batch)))["image"]
    for name, reader in readers.items():
        if reader.tolerance is None:
            continue
        ours = BandLayout("s2_all", reader.mode).normalize(packed)
        theirs = reader.finish(next(iter(DataLoader(reader.dataset, batch_size=batch))))
        difference = float(((theirs - ours) * STD).abs().max())
        assert difference <= reader.tolerance, f"{name} differs from ours by {difference} DN"


def device_step_table(
    dataset: BENv2Dataset, batch: int, repeats: int
) -> list[tuple[str, float, float]]:
    """(interpolation, previous ms, current ms) per batch of ``batch``, checked equal first."""
    packed = dataset.read_batch(list(range(batch)))["image"]
    rows = []
    for mode in ("nearest", "bilinear"):
        layout = BandLayout("s2_all", mode)
        old, new = previous_decode(layout, packed, True), layout.normalize(packed)
        if mode == "nearest":
            assert torch.equal(old, new), "the device step changed its nearest output"
        else:
            torch.testing.assert_close(old, new, rtol=1e-5, atol=1e-5)
        del old, new
        times = {
            "old": median_ms(functools.partial(previous_decode, layout, packed, True), repeats),
            "new": median_ms(functools.partial(layout.normalize, packed), repeats),
        }
        rows.append((mode, times["old"], times["new"]))
    return rows


def median_ms(step: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``4 * max(repeats, 5)`` calls of ``step``, after one."""
    step()
    runs = []
    for _ in range(max(repeats, 5) * 4):
        start = time.perf_counter()
        step()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000


def print_tables(
    args: argparse.Namespace, rates: dict[str, float], steps: list[tuple[str, float, float]]
) -> None:
    worker, full = rates[WORKER], rates[WITH_STEP]
    print(
        f"\n{args.patches} patches, batch {args.batch_size}, band set s2_all, {args.mode} (the "
        f"TorchGeo package: bilinear), 1 process, 1 thread, medians of {args.repeats}; "
        f"load average after: {load_average()}"
    )
    print(f"  {'reader':<88s} {'samples/s':>10s} {'(a`)/row':>9s} {'(a)/row':>8s}")
    for name, value in rates.items():
        print(f"  {name:<88s} {value:10.1f} {worker / value:8.2f}x {full / value:7.2f}x")
    for line in missing_packages():
        print(f"  ({line})")
    print(f"\n  worker part / decode floor: {worker / rates[FLOOR]:.2f}x (goal >= 0.8)")
    print(f"\ndevice step alone on the CPU, batch {args.batch_size}, 1 thread, ms per batch:")
    print(f"  {'interpolation':<14s} {'previous':>9s} {'current':>9s} {'speed-up':>9s}")
    for mode, old, new in steps:
        print(f"  {mode:<14s} {old:9.1f} {new:9.1f} {old / new:8.2f}x")
    print(f"(goal: >= 4x; load average now {load_average()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patches", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mode", default="nearest", choices=("nearest", "bilinear"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # one CPU worker
    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ids = make_patches(folder, args.patches)
        dataset = our_dataset(folder / "lmdb", ids, args.mode)
        readers = peer_readers(folder, ids, args.mode)
        check_readers(dataset, readers, args.batch_size)
        passes = {FLOOR: decode_floor(folder / "lmdb", ids), **our_rows(dataset, args.batch_size)}
        for name, reader in readers.items():
            passes[name] = loader_pass(
                DataLoader(reader.dataset, batch_size=args.batch_size), reader.finish
            )
        rates = {name: rate(one_pass, args.repeats) for name, one_pass in passes.items()}
        steps = device_step_table(dataset, args.batch_size, args.repeats)
    print_tables(args, rates, steps)
    print(
        f"max RSS of this run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
