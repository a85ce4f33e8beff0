"""Data preparation commands: ``python -m spml_rs.prepare <command> ...``.

* ``benv2-lmdb``: build the official reBEN LMDB from the extracted raw archives
  (any subset of ``--s2``, ``--s1``, ``--reference-maps``), resumable.
* ``spml-labels``: single-positive labels of a dataset's train split, keyed by
  image id (parquet or CSV), optionally also in the seed's ``.npy`` layout:
  ``random`` (seeded uniform draw among each image's labels) or ``dominant``
  (reBEN: the class covering most reference-map pixels, checked against the
  metadata labels). The dataset comes from the packaged configs (``dataset=<name>``
  and any ``key=value`` overrides, as in training), so the train split is exactly
  the one a run trains on.

Exit status: 0 on success, 1 when some input failed (listed), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spml_rs import labels as spl
from spml_rs.data.base import SPMLDataModule
from spml_rs.data.benv2_builder import build_lmdb, discover, unique_entries
from spml_rs.data.index import ClassAreas, DatasetIndex
from spml_rs.fileio import atomic_write_bytes
from spml_rs.label_files import write_single_positives

CONFIG_MODULE = "spml_rs.configs"
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
    entries, repeated = unique_entries(
        discover(args.s2, args.s1, args.reference_maps, args.metadata or [])
    )
    if repeated:
        console.print(
            f"[yellow]{len(repeated)} key(s) appear more than once in the input, each is built "
            f"once:[/yellow] {escape(str(spl.plain_ids(repeated, MAX_LISTED)))}"
        )
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
@functools.cache
def file_datasets() -> tuple[str, ...]:
    """Options of the ``dataset`` config group whose index reads files (not generated scenes)."""
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        options = GlobalHydra.instance().config_loader().get_group_options("dataset")
        return tuple(
            name
            for name in options
            if index_class(compose(overrides=[f"+dataset={name}"]).dataset.datamodule).reads_files
        )


def index_class(datamodule: DictConfig) -> type[DatasetIndex]:
    """The index class of a ``dataset.datamodule`` config (from its ``_target_``)."""
    target = get_class(datamodule._target_)
    if not issubclass(target, SPMLDataModule):
        raise TypeError(f"dataset.datamodule._target_ {datamodule._target_} is no SPMLDataModule")
    return target.index_class


def build_index(dataset: str, root: Path, overrides: Sequence[str] = ()) -> DatasetIndex:
    """The index ``dataset=<dataset> dataset.datamodule.root=<root> [overrides]`` trains on.

    Composed from the packaged configs as training composes them; only the keys that
    name the index's parameters are read (no datamodule, no label mode is built).
    """
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"dataset={dataset}", *overrides])
    datamodule = cfg.dataset.datamodule
    with open_dict(datamodule):
        datamodule.root = str(root)  # set, not an override string: any path is a valid value
    return index_class(datamodule).from_config(datamodule)


def dominant_from_maps(
    index: DatasetIndex, ids: np.ndarray, labels: np.ndarray, args: argparse.Namespace
) -> np.ndarray | None:
    """Dominant class per image; None (after reporting) when it disagrees with the labels."""
    if not isinstance(index, ClassAreas):
        raise ValueError(f"dataset {index.name!r} has no pixel masks to find dominant classes in")
    with _progress() as progress:
        task = progress.add_task("reading reference maps", total=len(ids))
        counts = index.class_pixel_counts(
            "train", args.reference_maps, progress=lambda n: progress.advance(task, n)
        )
    positives = spl.dominant_positives(counts, ids=ids)
    bad = np.flatnonzero(labels[np.arange(len(ids)), positives] == 0)
    if not bad.size:
        return positives
    names = index.class_names
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
    return spl.dominant_positives(counts * labels, ids=ids)


def cmd_spml_labels(args: argparse.Namespace) -> int:
    outputs = [args.out, *([args.out.with_suffix(".npy")] if args.npy else [])]
    existing = [str(path) for path in outputs if path.exists()]
    if existing and not args.overwrite:
        console.print(f"[red]error:[/red] refusing to overwrite {escape(str(existing))}; "
                      "choose another --out or pass --overwrite")  # fmt: skip
        return 2
    snow_cloud = ["dataset.datamodule.include_snow_cloud=true"] if args.include_snow_cloud else []
    index = build_index(args.dataset, args.root, [*snow_cloud, *args.overrides])
    index.check_label_mode(args.mode)
    ids, labels = index.split_labels("train")
    if args.mode == "random":
        positives = spl.random_positives(labels, args.seed, ids=ids)
    else:
        found = dominant_from_maps(index, ids, labels, args)
        if found is None:
            return 1
        positives = found
    spl.check_positives_are_true(positives, labels, list(ids))
    write_single_positives(args.out, list(map(str, ids)), positives, index.class_names)
    console.print(f"{args.out}: {len(ids)} {args.mode} single positives ({args.dataset} train)")
    if args.npy:
        npy = args.out.with_suffix(".npy")
        array = positives if args.npy == "indices" else spl.single_positive_targets(
            positives, len(index.class_names)
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
    labels.add_argument("--dataset", choices=file_datasets(), required=True,
                        help="a dataset config (dataset=<name>)")  # fmt: skip
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
    labels.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out (and its .npy)")  # fmt: skip
    labels.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="overrides of the dataset config as in training, e.g. "
                        "dataset.datamodule.lmdb_name=BigEarthNet-V2-LMDB")  # fmt: skip
    labels.set_defaults(func=cmd_spml_labels)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError, KeyError, HydraException) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        return 2 if isinstance(error, (FileNotFoundError, HydraException)) else 1


if __name__ == "__main__":
    sys.exit(main())
