"""End to end in headless chromium: label by keyboard and mouse, crash, resume, undo, train."""

from __future__ import annotations

import csv
import json
import os
import statistics
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

if not os.environ.get("CI"):  # in CI a missing Playwright is a failure, never a silent skip
    pytest.importorskip("playwright", reason="the browser tests drive chromium with Playwright")


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class Page:
    """The annotator page with helpers that wait until the next image is on screen."""

    def __init__(self, page: object) -> None:
        self.page = page

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("#image[data-image-id]")

    @property
    def image_id(self) -> str:
        return self.page.get_attribute("#image", "data-image-id")

    def candidates(self) -> list[str]:
        return self.page.eval_on_selector_all(
            ".candidate", "bs => bs.map(b => b.dataset.className)"
        )

    def _wait_for(self, image_id: str | None = None, batch: int | None = None) -> None:
        selector = "#image"
        if image_id is not None:
            selector += f'[data-image-id="{image_id}"]'
        if batch is not None:
            selector += f'[data-batch="{batch}"]'
        self.page.wait_for_selector(selector, timeout=10_000)

    def act(self, key: str | None = None, click: str | None = None) -> str:
        """Press ``key`` or click ``click``; wait until another image is shown; return its id."""
        before = self.image_id
        count = self.latency_count()
        if key is not None:
            self.page.keyboard.press(key)
        else:
            self.page.click(click)
        self.page.wait_for_function(
            "n => window.annotatorLatencies.length > n", arg=count, timeout=10_000
        )
        assert self.image_id != before or key in ("u", "U")
        return self.image_id

    def latency_count(self) -> int:
        return self.page.evaluate("window.annotatorLatencies.length")

    def latencies(self) -> list[float]:
        return self.page.evaluate("window.annotatorLatencies")

    def next_batch(self, key: bool = True) -> None:
        batch = int(self.page.get_attribute("#image", "data-batch"))
        if key:
            self.page.keyboard.press("n")
        else:
            self.page.click("#next-batch")
        total = int(self.page.get_attribute("#image", "data-num-batches"))
        self._wait_for(batch=(batch + 1) % total)


@pytest.fixture
def page(browser: object) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield Page(context.new_page())
    context.close()


def report_latency(values: list[float]) -> None:
    """Print the key/click -> next image shown times (``pytest -s``); not asserted."""
    assert values and all(v > 0 for v in values)
    print(
        f"annotator latency: median {statistics.median(values):.1f} ms over {len(values)} actions"
    )


def test_label_crash_resume_undo_in_the_browser(
    aid_root: Path, tmp_path: Path, start_server, page
) -> None:
    out = tmp_path / "labels" / "aid_manual.csv"
    args = ["--dataset", "aid", "--root", str(aid_root), "--out", str(out),
            "--annotator", "alice", "--order", "dataset"]  # fmt: skip
    server = start_server(*args)
    page.open(server.url)
    expected: dict[str, str] = {}
    log: list[tuple[str, str, str]] = []

    def choose(how: str, k: int) -> None:
        image_id, name = page.image_id, page.candidates()[k]
        expected[image_id] = name
        log.append((image_id, name, "label"))
        page.act(key=str(k + 1)) if how == "key" else page.act(click=f".candidate >> nth={k}")

    assert page.image_id == "airport_1"
    choose("key", 0)  # airport_1
    choose("mouse", 1)  # airport_2
    page.next_batch()
    choose("key", 2)  # airport_3, from the second batch
    log.append(("bareland_1", "", "skip"))
    assert page.act(key="s") == "bareland_2"
    choose("key", 1)  # bareland_2 ...
    del expected["bareland_2"]
    log.append(("bareland_2", "", "undo"))
    assert page.act(key="u") == "bareland_2"  # ... taken back: the page returns to it
    assert page.page.text_content("#state") == ""
    choose("key", 3)  # bareland_2 again, another class
    choose("key", 0)  # beach_1
    server.kill()  # SIGKILL mid-session

    server = start_server(*args)
    page.open(server.url)
    assert page.image_id == "beach_2"  # resumes at the first image without a choice
    del expected["beach_1"]
    log.append(("beach_1", "", "undo"))
    assert page.act(key="u") == "beach_1"  # undo works across the restart
    choose("mouse", 1)  # beach_1
    assert page.act(key="ArrowLeft") == "beach_1"  # review: the label is shown
    assert "Labelled: " + expected["beach_1"] in page.page.text_content("#state")
    assert page.page.get_attribute(".candidate.current", "data-class-name") == expected["beach_1"]
    assert page.act(click="#next") == "beach_2"
    page.next_batch(key=False)
    choose("mouse", 0)  # beach_2 from the second batch
    assert page.image_id == "beach_3"
    report_latency(page.latencies())
    server.kill()

    rows = read_rows(out)
    assert {r["image_id"]: r["class_name"] for r in rows} == expected
    assert {r["annotator"] for r in rows} == {"alice"}
    events = read_rows(out.with_name(out.name + ".events.csv"))
    # undo rows carry the image's class after the undo: none here
    assert [(r["image_id"], r["class_name"], r["action"]) for r in events] == log


def test_annotate_synthetic_split_then_train_manual(
    make_cfg, cache_dir: Path, tmp_path: Path, page
) -> None:
    """A tiny synthetic train split annotated fully in the browser is a valid manual label file."""
    from werkzeug.serving import make_server

    from annotator.app import create_app
    from annotator.session import AnnotationSession
    from annotator.sources import synthetic_source
    from annotator.store import AnnotationStore
    from spml_rs.label_files import read_single_positives
    from spml_rs.train import train

    sizes = {"num_train": 8, "num_val": 48, "num_test": 48, "image_size": None}
    source = synthetic_source(cache_dir, "train", "multispectral", 0, sizes)
    out = tmp_path / "synthetic_manual.csv"
    session = AnnotationSession(source, AnnotationStore(out, "carol"), order="seeded", seed=3)
    server = make_server("127.0.0.1", 0, create_app(session), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.open(f"http://127.0.0.1:{server.server_port}/")
        truth = _full_labels(cache_dir, source)
        chosen = {}
        for step in range(len(source.image_ids)):
            image_id = page.image_id
            true_names = truth[image_id]
            while not set(page.candidates()) & true_names:  # humans page through the batches
                page.next_batch()
            k = next(k for k, name in enumerate(page.candidates()) if name in true_names)
            chosen[image_id] = page.candidates()[k]
            if step < len(source.image_ids) - 1:
                page.act(key=str(k + 1)) if step % 3 else page.act(click=f".candidate >> nth={k}")
            else:  # the last choice: the page stays and says all is done
                page.page.keyboard.press(str(k + 1))
                page.page.wait_for_selector("#message.done")
        report_latency(page.latencies())
    finally:
        server.shutdown()
        session.store.close()

    ids = list(source.image_ids)
    positives = read_single_positives(out, ids, source.class_names)
    assert [source.class_names[i] for i in positives] == [chosen[i] for i in ids]
    cfg = make_cfg(
        "dataset.datamodule.num_train=8", "label_mode=manual", f"label_mode.path={out}", "method=an"
    )
    metrics = train(cfg)
    assert np.isfinite(metrics["test/mAP_macro"])
    assert json.loads((tmp_path / "results.json").read_text())["method"] == "an"


def _full_labels(cache_dir: Path, source: object) -> dict[str, set[str]]:
    from spml_rs.data.synthetic import SyntheticDataModule

    module = SyntheticDataModule(num_train=8, num_val=48, num_test=48, root=str(cache_dir))
    labels = module.scenes["train"].labels
    return {
        image_id: {source.class_names[c] for c in np.flatnonzero(row)}
        for image_id, row in zip(source.image_ids, labels, strict=True)
    }


def test_a_corrupt_reben_value_shows_its_message_and_key_in_the_page(
    corrupt_benv2_server, page
) -> None:
    """A corrupt LMDB value: the page says which key and why, instead of a broken image."""

    server, first, out = corrupt_benv2_server
    page.open(server.url)
    assert page.image_id == first
    page.page.wait_for_selector("#image-error:not([hidden])")
    message = page.page.text_content("#image-error")
    assert first in message and "is not a valid safetensors dict" in message, message
    assert "BigEarthNet-V2-LMDB" in message and "spml_rs.prepare benv2-lmdb" in message
    assert page.page.get_attribute("#image", "src") is None  # no broken-image icon
    assert page.page.text_content("#image-id") == first and len(page.candidates()) == 4

    following = page.act(key="s")  # a corrupt image can be skipped; the next one shows
    assert following != first
    assert page.page.is_hidden("#image-error")
    assert page.page.evaluate("document.getElementById('image').naturalWidth") == 120
    assert [r["action"] for r in read_rows(out.with_name(out.name + ".events.csv"))] == ["skip"]
