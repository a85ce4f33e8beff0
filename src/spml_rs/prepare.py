"""Data preparation commands: ``python -m spml_rs.prepare <command> ...``.

* ``benv2-lmdb``: build the official reBEN LMDB from the extracted raw archives
  (any subset of ``--s2``, ``--s1``, ``--reference-maps``), resumable.
* ``spml-labels``: single-positive labels of a dataset's train split, keyed by
  image id (parquet or CSV), optionally also in the seed's ``.npy`` layout:
  ``random`` (seeded uniform draw among each image's labels) or ``dominant``
  (reBEN: the class covering most reference-map pixels, checked against the
  metadata labels).

Exit status: 0 on success, 1 when some input failed (listed), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spml_rs import labels as spl
from spml_rs.data.base import SPMLDataModule
from spml_rs.data.benv2_builder import build_lmdb, discover
from spml_rs.fileio import atomic_write_bytes
from spml_rs.label_files import write_single_positives

#: dataset name -> datamodule class (import path), built with ``root=`` and a label mode.
DATAMODULES = {
    "benv2": "spml_rs.data.benv2:BENv2DataModule",
    "aid": "spml_rs.data.aid:AIDDataModule",
}
MAX_LISTED = 50
console = Console(stderr=True, soft_wrap=True)  # no hard wraps: messages stay greppable


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


# ------------------------------------------------------------------ benv2-lmdb
def cmd_benv2_lmdb(args: argparse.Namespace) -> int:
    if not (args.s2 or args.s1 or args.reference_maps):
        console.print("[red]give at least one of --s2, --s1, --reference-maps[/red]")
        return 2
    entries = discover(args.s2, args.s1, args.reference_maps, args.metadata or [])
    with _progress() as progress:
        task = progress.add_task(f"writing {args.out}", total=len(entries))
        report = build_lmdb(
            entries,
            args.out,
            map_size=int(args.map_size_gb * (1 << 30)),
            threads=args.threads,
            progress=lambda n: progress.advance(task, n),
        )
    console.print(
        f"{args.out}: {report.written} entries written, {report.skipped} already present, "
        f"{len(report.failures)} failed (of {len(entries)})"
    )
    if report.failures:
        _report_failures(report.failures, args.out / "build_failures.txt")
        return 1
    return 0


def _report_failures(failures: list[tuple[str, str]], listing: Path) -> None:
    listing.write_text("".join(f"{key}\t{reason}\n" for key, reason in failures))
    for key, reason in failures[:MAX_LISTED]:
        console.print(f"  [red]failed[/red] {escape(key)}: {escape(reason)}")
    if len(failures) > MAX_LISTED:
        console.print(f"  ... {len(failures) - MAX_LISTED} more")
    console.print(f"full list of failed entries: {listing}; rerun the command to retry them")


# ----------------------------------------------------------------- spml-labels
def build_datamodule(
    dataset: str, mode: str, root: Path, extra: Mapping[str, object]
) -> SPMLDataModule:
    module_name, class_name = DATAMODULES[dataset].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    # Built with full labels: the file made here is what the single-positive modes read later.
    datamodule: SPMLDataModule = cls(root=str(root), label_mode="full", **extra)
    if mode not in datamodule.supported_label_modes:
        raise ValueError(
            f"label_mode={mode!r} is not available for dataset {datamodule.name!r}. "
            f"{datamodule.unsupported_mode_hint(mode)}"
        )
    return datamodule


def dominant_from_maps(
    datamodule: SPMLDataModule, ids: np.ndarray, labels: np.ndarray, args: argparse.Namespace
) -> np.ndarray | None:
    """Dominant class per image; None (after reporting) when it disagrees with the labels."""
    with _progress() as progress:
        task = progress.add_task("reading reference maps", total=len(ids))
        counts = datamodule.class_pixel_counts(  # type: ignore[attr-defined]
            "train", args.reference_maps, progress=lambda n: progress.advance(task, n)
        )
    positives = spl.dominant_positives(counts)
    bad = np.flatnonzero(labels[np.arange(len(ids)), positives] == 0)
    if not bad.size:
        return positives
    names = datamodule.class_names
    console.print(
        f"[yellow]{bad.size} image(s): the dominant class is not a metadata label[/yellow]"
    )
    for row in bad[:MAX_LISTED]:
        present = [names[c] for c in np.flatnonzero(labels[row])]
        console.print(escape(f"  {ids[row]}: dominant {names[positives[row]]!r}, labels {present}"))
    if not args.restrict_to_labels:
        console.print("nothing written; rerun with --restrict-to-labels to take the dominant "
                      "class among each image's metadata labels")  # fmt: skip
        return None
    return spl.dominant_positives(counts * labels)


def cmd_spml_labels(args: argparse.Namespace) -> int:
    extra = {"include_snow_cloud": True} if args.include_snow_cloud else {}
    datamodule = build_datamodule(args.dataset, args.mode, args.root, extra)
    ids, labels = datamodule._split_labels("train")
    if args.mode == "random":
        positives = spl.random_positives(labels, args.seed)
    else:
        found = dominant_from_maps(datamodule, ids, labels, args)
        if found is None:
            return 1
        positives = found
    spl.check_positives_are_true(positives, labels, list(ids))
    write_single_positives(args.out, list(map(str, ids)), positives, datamodule.class_names)
    console.print(f"{args.out}: {len(ids)} {args.mode} single positives ({args.dataset} train)")
    if args.npy:
        npy = args.out.with_suffix(".npy")
        array = positives if args.npy == "indices" else spl.single_positive_targets(
            positives, len(datamodule.class_names)
        ).clip(0).astype(np.uint8)  # fmt: skip
        _save_npy(npy, array)
        console.print(f"{npy}: {args.npy} layout {array.shape}, rows aligned with the train split")
    return 0


def _save_npy(path: Path, array: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


# ---------------------------------------------------------------------- parser
def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m spml_rs.prepare", description=__doc__.split("\n")[0]
    )
    commands = main.add_subparsers(dest="command", required=True)

    lmdb = commands.add_parser(
        "benv2-lmdb", help="build the reBEN LMDB from the raw GeoTIFF folders"
    )
    lmdb.add_argument("--s2", type=Path, help="extracted BigEarthNet-S2 folder")
    lmdb.add_argument("--s1", type=Path, help="extracted BigEarthNet-S1 folder")
    lmdb.add_argument("--reference-maps", type=Path, help="extracted Reference_Maps folder")
    lmdb.add_argument("--out", type=Path, required=True, help="output LMDB folder")
    lmdb.add_argument("--metadata", type=Path, action="append",
                      help="metadata parquet(s): build exactly their patches (repeatable)")  # fmt: skip
    lmdb.add_argument("--threads", type=int, default=4, help="GeoTIFF reader threads")
    lmdb.add_argument("--map-size-gb", type=float, default=1024.0, help="LMDB map size (sparse)")
    lmdb.set_defaults(func=cmd_benv2_lmdb)

    labels = commands.add_parser("spml-labels", help="single-positive labels of the train split")
    labels.add_argument("--dataset", choices=sorted(DATAMODULES), required=True)
    labels.add_argument("--mode", choices=("random", "dominant"), required=True)
    labels.add_argument("--seed", type=int, default=0, help="seed of the Random draw")
    labels.add_argument("--out", type=Path, required=True, help="output .parquet or .csv")
    labels.add_argument("--root", type=Path, required=True, help="dataset folder")
    labels.add_argument("--reference-maps", type=Path,
                        help="reBEN Dominant: raw Reference_Maps folder instead of the LMDB")  # fmt: skip
    labels.add_argument("--restrict-to-labels", action="store_true",
                        help="reBEN Dominant: on disagreement, take the dominant metadata label")  # fmt: skip
    labels.add_argument("--include-snow-cloud", action="store_true",
                        help="reBEN: include snow/cloud/shadow patches in the train split")  # fmt: skip
    labels.add_argument("--npy", nargs="?", const="indices", choices=("indices", "onehot"),
                        help="also write <out>.npy: (N,) class indices or (N, C) one-hot")  # fmt: skip
    labels.set_defaults(func=cmd_spml_labels)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError, KeyError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        return 2 if isinstance(error, FileNotFoundError) else 1


if __name__ == "__main__":
    sys.exit(main())
