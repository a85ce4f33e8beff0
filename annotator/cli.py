"""``python -m annotator``: label single positives in the browser.

Example::

    python -m annotator --dataset aid --root data/AID --out annotations/aid/manual.csv \\
        --annotator alice
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence

from annotator.app import ANY_HOST, create_app
from annotator.session import ORDERS, AnnotationSession
from annotator.sources import AIDSource, ImageSource, benv2_source, synthetic_source
from annotator.store import AnnotationStore

DATASETS = ("aid", "benv2", "synthetic")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m annotator",
        description="Manual single-positive annotation in the browser (keys: 1-4 choose, "
        "N next batch of classes, S skip, U undo, arrows move).",
    )
    parser.add_argument("--dataset", choices=DATASETS, required=True)
    parser.add_argument("--root", required=True, help="dataset root (synthetic: the cache folder)")
    parser.add_argument("--out", required=True, help="label file to write (CSV); its event log "
                        "is <out>.events.csv")  # fmt: skip
    parser.add_argument(
        "--annotator", default=_default_name(), help="name on every row (default: $USER)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    parser.add_argument("--order", choices=ORDERS, default="seeded", help="image order")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order and the candidates")
    parser.add_argument("--split", default="train", help="split to annotate (AID: train, test, all; "
                        "benv2 and synthetic: train, val, test)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="annotate the first N images only")
    group = parser.add_argument_group(
        "hand edits", "when --out was edited by hand since the annotator wrote it (the default "
        "start refuses, naming the differing images)"
    )  # fmt: skip
    edits = group.add_mutually_exclusive_group()
    edits.add_argument("--adopt-edits", dest="edits", action="store_const", const="adopt",
                       default="refuse", help="keep the edits: log them as your choices "
                       "(a deleted row becomes a skip; U takes them back)")  # fmt: skip
    edits.add_argument("--rebuild-from-log", dest="edits", action="store_const", const="rebuild",
                       help="move the edited file aside (<name>.edited-<time>.csv) and rewrite "
                       "it from the event log")  # fmt: skip
    group = parser.add_argument_group("reBEN")
    group.add_argument("--lmdb", default=None, help="LMDB folder name in --root "
                       "(default: found as dataset=benv2 finds it)")  # fmt: skip
    group.add_argument("--metadata", default="metadata.parquet", help="metadata file in --root "
                       "(or an absolute path)")  # fmt: skip
    group = parser.add_argument_group("synthetic (as in the dataset config)")
    group.add_argument("--preset", default="multispectral", choices=("multispectral", "rgb"))
    group.add_argument("--data-seed", type=int, default=0, help="dataset.datamodule.seed")
    for size in ("num_train", "num_val", "num_test", "image_size"):
        group.add_argument(f"--{size.replace('_', '-')}", type=int, default=None, dest=size)
    return parser


def _default_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "annotator"


def build_source(args: argparse.Namespace) -> ImageSource:
    if args.dataset == "aid":
        return AIDSource(args.root, args.split)
    if args.dataset == "benv2":
        return benv2_source(args.root, args.split, args.lmdb, args.metadata)
    sizes = {k: getattr(args, k) for k in ("num_train", "num_val", "num_test", "image_size")}
    return synthetic_source(args.root, args.split, args.preset, args.data_seed, sizes)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    try:
        source = build_source(args)
        store = AnnotationStore(
            args.out,
            args.annotator,
            edits=args.edits,
            class_names=source.class_names,
            image_ids=source.image_ids,
        )
        session = AnnotationSession(
            source, store, order=args.order, seed=args.seed, limit=args.limit
        )
    except (OSError, ValueError) as error:
        print(f"annotator: {error}", file=sys.stderr)
        return 2
    app = create_app(session, args.host)
    serve(app, args.host, args.port, session)
    return 0


def serve(app: object, host: str, port: int, session: AnnotationSession) -> None:
    """Run Werkzeug's threaded server; print the URL once the port is bound."""
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)  # type: ignore[arg-type]
    shown = "127.0.0.1" if host in ANY_HOST else host
    url = f"http://{shown if ':' not in shown else f'[{shown}]'}:{server.server_port}/"
    progress = session.progress(session.store.refresh())
    print(
        f"annotator: {progress['done']}/{progress['total']} {session.source.name} images done; "
        f"labels -> {session.store.out}\nannotator: open {url}",
        flush=True,
    )
    if host in ANY_HOST:
        print(
            "annotator: WARNING: listening on every interface, without authentication", flush=True
        )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        session.store.close()
