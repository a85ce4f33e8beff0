#!/usr/bin/env python3
"""reBEN at scale: one epoch of the training loader on large LMDBs, workers' memory, the real index.

Writes two synthetic reBEN LMDBs in the official encoding (``make_benv2_lmdb``:
S2, S1 and reference maps per patch; rows sampled from the real metadata when
``--metadata`` exists), a small one and a large one, then reads one training
epoch of each with the library's loader (``BENv2DataModule.train_dataloader``:
batch reads, band set ``s2``, ``--batch-size``) with 0, 1 and 2 workers and
reports samples/s, time to the first batch and the memory of every worker
after the epoch, from ``/proc/<pid>/status`` and ``smaps_rollup``:

* Private_Dirty: memory only this process wrote (heap, batch buffers; a forked
  worker's copy-on-write pages once written): what it costs on its own, and
  what must not grow with the LMDB;
* RssFile: mapped file pages resident, mostly the LMDB pages read (page cache,
  clean, shared by every process mapping the file, reclaimable);
* Pss: the process's proportional share of everything it maps.

Then it builds the train index from the real ``metadata.parquet`` (480,038 rows)
in fresh processes: time and peak RSS increase (medians of 3).

    python benchmarks/benv2_scale.py --patches 20000 --small 2000 \
        [--metadata ../shared/data/benv2/metadata.parquet] [--work /tmp/benv2_scale]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from make_benv2_lmdb import write_synthetic_benv2

from spml_rs.data.benv2 import BENv2DataModule

DEFAULT_METADATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "benv2" / "metadata.parquet"
)
WORKERS = (0, 1, 2)


def load_average() -> str:
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def memory_mib(pid: int) -> dict[str, float]:
    """Private_Dirty, RssFile and Pss of process ``pid`` in MiB (Linux ``/proc``)."""
    fields: dict[str, float] = {}
    for name in ("status", "smaps_rollup"):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("Private_Dirty", "RssFile", "Pss"):
                fields[key] = int(value.split()[0]) / 1024
    return fields


def warm_page_cache(path: Path) -> None:
    """Read ``path`` once, so every epoch starts with the LMDB in the page cache."""
    with path.open("rb") as file:
        while file.read(1 << 24):
            pass


def epoch(root: Path, workers: int, batch: int) -> dict[str, Any]:
    """One training epoch with ``workers``: samples/s, first-batch time, per-process memory."""
    datamodule = BENv2DataModule(
        root=str(root), label_mode="random", batch_size=batch, num_workers=workers, verify="none"
    )
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    start = time.perf_counter()
    iterator = iter(loader)
    count = next(iterator)["image"].shape[0]
    first = time.perf_counter() - start
    count += sum(b["image"].shape[0] for b in iterator)
    seconds = time.perf_counter() - start
    # persistent workers are still alive after the epoch: measure them
    processes = getattr(iterator, "_workers", []) or []
    pids = [p.pid for p in processes] if workers else [os.getpid()]
    memory = [memory_mib(pid) for pid in pids]
    del iterator, loader
    return {"samples": count, "rate": count / seconds, "first": first, "memory": memory}


def index_cost(metadata: Path) -> dict[str, float]:
    """Build the train index in a fresh process: seconds and peak RSS increase (medians of 3)."""
    # Peak RSS during the build minus RSS before it: the kernel's high-water mark (VmHWM)
    # is reset after the imports by writing 5 to /proc/self/clear_refs (Linux).
    code = (
        "import time, json\n"
        "from pathlib import Path\n"
        "from spml_rs.data.benv2_index import read_split_index\n"
        "def status(field):\n"
        "    line = next(l for l in open('/proc/self/status') if l.startswith(field))\n"
        "    return int(line.split()[1]) / 1024\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "base = status('VmRSS')\n"
        "start = time.perf_counter()\n"
        f"index = read_split_index(Path({str(metadata)!r}), 'train')\n"
        "seconds = time.perf_counter() - start\n"
        "size = index.patch_ids.nbytes + index.labels.nbytes\n"
        "print(json.dumps({'rows': len(index.patch_ids), 'seconds': seconds,"
        " 'peak_rss_increase_mb': status('VmHWM') - base, 'index_mb': size / 2**20}))\n"
    )
    runs = [
        json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
        for _ in range(3)
    ]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def print_epochs(results: dict[tuple[int, int], dict[str, Any]], sizes: dict[int, float]) -> None:
    print(
        f"  {'patches':>8s} {'LMDB GiB':>9s} {'workers':>7s} {'train':>6s} {'samples/s':>10s} "
        f"{'1st batch s':>11s}  per process: Private_Dirty / RssFile / Pss MiB"
    )
    for (patches, workers), r in results.items():
        memory = ", ".join(
            f"{m['Private_Dirty']:.0f} / {m['RssFile']:.0f} / {m['Pss']:.0f}" for m in r["memory"]
        )
        where = "main" if workers == 0 else "workers"
        print(
            f"  {patches:8d} {sizes[patches]:9.2f} {workers:7d} {r['samples']:6d} "
            f"{r['rate']:10.0f} {r['first']:11.2f}  {where}: {memory}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patches", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--metadata", type=Path, default=DEFAULT_METADATA)
    parser.add_argument("--work", type=Path, default=None, help="keep the LMDBs here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    metadata = args.metadata if args.metadata.is_file() else None
    work = args.work or Path(tempfile.mkdtemp(prefix="benv2_scale_"))
    print(f"load average before: {load_average()}; {os.cpu_count()} CPUs; LMDBs in {work}")
    results: dict[tuple[int, int], dict[str, Any]] = {}
    sizes: dict[int, float] = {}
    try:
        for patches in (args.small, args.patches):
            root = work / f"benv2_{patches}"
            if not root.exists():
                start = time.perf_counter()
                write_synthetic_benv2(root, patches, metadata=metadata)
                print(f"  wrote {patches} patches in {time.perf_counter() - start:.0f} s")
            data = root / "BigEarthNet-V2-LMDB" / "data.mdb"
            sizes[patches] = data.stat().st_size / 2**30
            for workers in WORKERS:
                warm_page_cache(data)
                results[(patches, workers)] = epoch(root, workers, args.batch_size)
    finally:
        if args.work is None:
            shutil.rmtree(work)
    source = f"rows sampled from {metadata}" if metadata else "generated ids"
    print(
        f"\none training epoch (band set s2, batch {args.batch_size}, page cache warm: each LMDB "
        f"read once before each epoch), {source}; load average after: {load_average()}"
    )
    print_epochs(results, sizes)
    if metadata:
        cost = index_cost(metadata)
        print(
            f"\ntrain index from {metadata}: {cost['rows']:.0f} rows in {cost['seconds']:.2f} s, "
            f"peak RSS +{cost['peak_rss_increase_mb']:.0f} MiB, arrays kept {cost['index_mb']:.1f} MiB"
        )
    else:
        print(f"\n(no {args.metadata}: the index of the real metadata is not measured)")


if __name__ == "__main__":
    main()
