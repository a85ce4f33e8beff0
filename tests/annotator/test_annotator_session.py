"""Candidates, order, subset, navigation and progress of a session (no browser)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annotator.session import (
    AnnotationSession,
    InvalidRequest,
    candidate_batches,
    select_images,
)
from annotator.sources import ArraySource
from annotator.store import AnnotationStore, Event, Replay
from spml_rs.data.classes import AID17_CLASSES

AID = AID17_CLASSES


def test_candidates_are_stable_shuffled_batches_of_four() -> None:
    batches = candidate_batches(AID, "airport_1", seed=0)
    assert [len(b) for b in batches] == [4, 4, 4, 4, 1]
    assert sorted(sum(batches, ())) == sorted(AID)  # every class exactly once
    assert batches == candidate_batches(AID, "airport_1", seed=0)  # reloads see the same
    assert batches != candidate_batches(AID, "airport_2", seed=0)
    assert batches != candidate_batches(AID, "airport_1", seed=1)
    firsts = {candidate_batches(AID, f"x_{i}", 0)[0][0] for i in range(200)}
    assert len(firsts) == len(AID)  # the shuffle reaches every class


def test_order_and_subset() -> None:
    ids = [f"img_{i}" for i in range(50)]
    assert select_images(ids, "dataset", 0, None) == tuple(ids)
    assert select_images(ids, "dataset", 0, 5) == tuple(ids[:5])
    seeded = select_images(ids, "seeded", 7, None)
    assert sorted(seeded) == sorted(ids) and list(seeded) != ids
    assert seeded == select_images(ids, "seeded", 7, None)
    assert select_images(ids, "seeded", 7, 10) == seeded[:10]
    with pytest.raises(ValueError, match="order must be"):
        select_images(ids, "random", 0, None)
    with pytest.raises(ValueError, match="limit"):
        select_images(ids, "dataset", 0, 0)


def make_session(tmp_path: Path, annotator: str = "alice", **kwargs: object) -> AnnotationSession:
    ids = [f"img_{i}" for i in range(6)]
    source = ArraySource("toy", AID, ids, lambda i: np.zeros((3, 4, 4)))
    return AnnotationSession(source, AnnotationStore(tmp_path / "l.csv", annotator), **kwargs)


def test_navigation_resumes_at_the_first_open_image(tmp_path: Path) -> None:
    session = make_session(tmp_path, order="dataset")
    item = session.resume()
    assert item["image_id"] == "img_0" and item["state"] is None
    item = session.label("img_0", item["candidates"][2], 0)
    assert item["image_id"] == "img_1"
    assert session.skip("img_1")["image_id"] == "img_2"
    session.label("img_3", candidate_batches(AID, "img_3", 0)[1][0], 1)  # done out of order
    assert session.resume()["image_id"] == "img_2"
    assert session.skip("img_2")["image_id"] == "img_4"  # img_3 is done already
    labelled = session.item(3)  # the page opens at the batch holding the current label
    assert labelled["batch"] == 1 and labelled["state"]["action"] == "label"
    assert session.undo()["image_id"] == "img_2"
    assert session.item(99)["pos"] == 5  # clamped


def test_other_annotators_choices_count_as_done(tmp_path: Path) -> None:
    alice, bob = make_session(tmp_path, "alice"), make_session(tmp_path, "bob")
    first = alice.resume()
    bob.skip(first["image_id"])
    assert alice.resume()["image_id"] != first["image_id"]
    assert alice.resume()["progress"]["done"] == 1
    assert alice.undo() is None  # bob's skip is not alice's to undo


def test_choices_are_validated(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    shown = candidate_batches(AID, "img_0", 0)
    with pytest.raises(InvalidRequest, match="unknown class"):
        session.label("img_0", "volcano", 0)
    with pytest.raises(InvalidRequest, match="not among the candidates"):
        session.label("img_0", shown[1][0], 0)
    with pytest.raises(InvalidRequest, match="unknown image id"):
        session.label("img_99", shown[0][0], 0)
    with pytest.raises(InvalidRequest, match="batch must be"):
        session.label("img_0", shown[0][0], 7)
    with pytest.raises(InvalidRequest, match=r"batch must be an integer .* got True"):
        session.label("img_0", shown[1][0], True)  # JSON true is not batch 1
    with pytest.raises(InvalidRequest, match="unknown class"):
        session.label("img_0", [shown[0][0]], 0)
    assert not (tmp_path / "l.csv").exists()


def test_pace_leaves_breaks_out(tmp_path: Path) -> None:
    session = make_session(tmp_path)
    replay = Replay()
    for i, second in enumerate([0, 4, 8, 2000, 2004, 2009]):  # a half-hour break after the third
        stamp = f"2025-01-01T00:{second // 60:02d}:{second % 60:02d}.000+00:00"
        replay.apply(Event(f"img_{i}", "sea", "alice", stamp, "label"))
    progress = session.progress(replay)
    assert progress["done"] == 6 and progress["total"] == 6
    assert progress["per_minute"] == pytest.approx(15.0)  # median gap 4 s, not ~6 minutes
    session.store.record("img_0", "skip")  # the log itself holds one choice: no pace yet
    progress = session.progress(session.store.refresh())
    assert progress["per_minute"] is None and progress["eta_s"] is None
    assert progress["done"] == 1
