"""The event log and the exported label file: durability, undo, several annotators."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annotator.store import EVENT_COLUMNS, LABEL_COLUMNS, AnnotationStore, Event, HandEditsError
from spml_rs.label_files import read_single_positives

CLASSES = ("airplane", "bare-soil", "buildings", "cars", "sea")
IDS = [f"img_{i}" for i in range(6)]


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def exported(path: Path) -> dict[str, str]:
    return {row["image_id"]: row["class_name"] for row in rows(path)}


def test_label_skip_undo_and_export(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    store = AnnotationStore(out, "alice")
    store.record("img_0", "label", "sea")
    store.record("img_1", "label", "cars")
    store.record("img_1", "label", "airplane")  # changed their mind
    store.record("img_2", "skip")
    assert exported(out) == {"img_0": "sea", "img_1": "airplane"}
    assert list(rows(out)[0]) == list(LABEL_COLUMNS)

    undone = store.record("", "undo")  # takes back the skip of img_2
    assert (undone.image_id, undone.class_name) == ("img_2", "")
    undone = store.record("", "undo")  # the relabel: img_1 is "cars" again
    assert (undone.image_id, undone.class_name) == ("img_1", "cars")
    assert exported(out) == {"img_0": "sea", "img_1": "cars"}
    assert "img_2" not in store.replay.states
    store.close()

    log_rows = rows(store.log_path)
    assert list(log_rows[0]) == list(EVENT_COLUMNS)
    assert [(r["image_id"], r["class_name"], r["action"]) for r in log_rows] == [
        ("img_0", "sea", "label"),
        ("img_1", "cars", "label"),
        ("img_1", "airplane", "label"),
        ("img_2", "", "skip"),
        ("img_2", "", "undo"),
        ("img_1", "cars", "undo"),
    ]


def test_undo_works_across_restarts(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    first = AnnotationStore(out, "alice")
    for image_id, name in zip(IDS[:3], CLASSES, strict=False):
        first.record(image_id, "label", name)
    first.close()  # the process ends here

    second = AnnotationStore(out, "alice")
    assert second.record("", "undo").image_id == "img_2"
    assert second.record("", "undo").image_id == "img_1"
    second.close()
    third = AnnotationStore(out, "alice")
    assert exported(out) == {"img_0": "airplane"}
    assert third.record("", "undo").image_id == "img_0"
    assert third.record("", "undo") is None  # nothing left
    assert exported(out) == {}


def test_export_loads_as_manual_labels(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    store = AnnotationStore(out, "alice")
    for image_id, name in zip(
        IDS, ["sea", "cars", "sea", "airplane", "bare-soil", "cars"], strict=True
    ):
        store.record(image_id, "label", name)
    store.record("img_5", "skip")
    store.record("", "undo")  # the skip is taken back: img_5 is "cars" again
    positives = read_single_positives(out, IDS, CLASSES)
    assert positives.tolist() == [4, 3, 4, 0, 1, 3]


def test_two_annotators_share_one_output(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    alice, bob = AnnotationStore(out, "alice"), AnnotationStore(out, "bob")
    alice.record("img_0", "label", "sea")
    bob.record("img_1", "label", "cars")
    assert set(alice.refresh().states) == {"img_0", "img_1"}  # each sees the other's rows
    bob.record("img_0", "label", "airplane")  # bob relabels alice's image
    alice.record("", "undo")  # alice takes back her img_0: bob's later choice stands
    assert exported(out) == {"img_0": "airplane", "img_1": "cars"}
    bob.record("", "undo")  # bob's img_0: alice's label was undone, so nothing comes back
    assert exported(out) == {"img_1": "cars"}
    by = {row["image_id"]: row["annotator"] for row in rows(out)}
    assert by == {"img_1": "bob"}


def test_last_row_wins_rule_matches_the_replay(tmp_path: Path) -> None:
    """Readers of the raw log need one rule: last row per image wins, empty class = no label."""
    out = tmp_path / "labels.csv"
    stores = [AnnotationStore(out, name) for name in ("alice", "bob")]
    rng = random.Random(0)
    for _ in range(300):
        store = rng.choice(stores)
        action = rng.choice(["label", "label", "skip", "undo"])
        store.record(rng.choice(IDS), action, rng.choice(CLASSES) if action == "label" else "")
    last: dict[str, str] = {}
    for row in rows(stores[0].log_path):
        last[row["image_id"]] = row["class_name"]
    assert {k: v for k, v in last.items() if v} == exported(out)


def test_a_torn_last_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    store = AnnotationStore(out, "alice")
    store.record("img_0", "label", "sea")
    store.close()
    with store.log_path.open("a") as handle:  # a crash in the middle of a write
        handle.write('img_1,"Moors, hea')  # torn inside a quoted field
    restarted = AnnotationStore(out, "alice")
    assert set(restarted.replay.states) == {"img_0"}  # the torn row is not complete yet
    restarted.record("img_2", "label", "cars")
    again = AnnotationStore(out, "alice")
    assert exported(out) == {"img_0": "sea", "img_2": "cars"}
    assert set(again.replay.states) == {"img_0", "img_2"}
    assert store.log_path.read_text().splitlines()[2] == 'img_1,"Moors, hea'


def test_refuses_to_overwrite_a_file_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    out.write_text("image_id,class_name\nimg_0,sea\n")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        AnnotationStore(out, "alice")
    assert out.read_text() == "image_id,class_name\nimg_0,sea\n"


def test_concurrent_processes_never_corrupt_the_log(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    script = (
        "import sys\nfrom annotator.store import AnnotationStore\n"
        "store = AnnotationStore(sys.argv[1], sys.argv[2])\n"
        "for i in range(150):\n"
        "    store.record(f'{sys.argv[2]}_{i % 40}', 'label', 'sea' if i % 2 else 'cars, etc')\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(out), name])
        for name in ("ann_a", "ann_b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    log_rows = rows(out.with_name("labels.csv.events.csv"))
    assert len(log_rows) == 300
    assert all(len(row) == len(EVENT_COLUMNS) and None not in row.values() for row in log_rows)
    labels = exported(out)
    assert len(labels) == 80
    expected = {
        f"{n}_{i}": "sea" if (110 + i) % 2 else "cars, etc"
        for n in ("ann_a", "ann_b")
        for i in range(40)
    }
    # the last write of id k is i = 110 + k (k < 40); odd i wrote "sea"
    assert labels == expected
    assert np.unique([row["annotator"] for row in log_rows]).tolist() == ["ann_a", "ann_b"]


def labelled_then_edited(tmp_path: Path) -> tuple[Path, str]:
    """alice labels img_0..img_2; then the file is edited by hand: its text afterwards."""
    out = tmp_path / "labels.csv"
    store = AnnotationStore(out, "alice")
    for image_id, name in [("img_0", "sea"), ("img_1", "cars"), ("img_2", "airplane")]:
        store.record(image_id, "label", name)
    store.close()
    lines = out.read_text().splitlines()
    lines[2] = lines[2].replace(",cars,", ",buildings,")  # img_1: another class
    del lines[3]  # img_2: row deleted
    lines.append("img_4,sea,alice,2025-03-01T10:00:00.000+00:00")  # img_4: row added
    out.write_text("\n".join(lines) + "\n")
    return out, out.read_text()


def test_hand_edits_stop_the_start_and_offer_both_ways_out(tmp_path: Path) -> None:
    out, edited = labelled_then_edited(tmp_path)
    with pytest.raises(HandEditsError) as caught:
        AnnotationStore(out, "alice")
    message = str(caught.value)
    for expected in (str(out), f"{out}.events.csv", "3 image(s)", "--adopt-edits",
                     "--rebuild-from-log", "img_1 (file: 'buildings', log: 'cars')",
                     "img_2 (file: no row, log: 'airplane')", "img_4 (file: 'sea', log: no row)"):  # fmt: skip
        assert expected in message, message
    assert out.read_text() == edited  # nothing was rewritten
    assert len(rows(out.with_name("labels.csv.events.csv"))) == 3  # nor logged


def test_adopted_edits_are_logged_choices_that_undo_takes_back(tmp_path: Path) -> None:
    out, _ = labelled_then_edited(tmp_path)
    store = AnnotationStore(out, "bob", edits="adopt", class_names=CLASSES, image_ids=IDS)
    edited = {"img_0": "sea", "img_1": "buildings", "img_4": "sea"}
    assert exported(out) == edited
    events = rows(store.log_path)[3:]
    assert [(r["image_id"], r["class_name"], r["annotator"], r["action"]) for r in events] == [
        ("img_1", "buildings", "bob", "label"),
        ("img_2", "", "bob", "skip"),  # a deleted row: the image has no label now
        ("img_4", "sea", "bob", "label"),
    ]
    store.close()
    store = AnnotationStore(out, "bob")  # the edits are in the log: a plain start works
    assert exported(out) == edited
    for _ in range(3):
        store.record("", "undo")
    assert exported(out) == {"img_0": "sea", "img_1": "cars", "img_2": "airplane"}


def test_edits_with_unknown_classes_or_ids_are_not_adopted(tmp_path: Path) -> None:
    out, edited = labelled_then_edited(tmp_path)
    out.write_text(edited.replace("img_4,sea,", "img_4,volcano,"))
    with pytest.raises(HandEditsError, match=r"line 4: class 'volcano' of image 'img_4'.*expected"):
        AnnotationStore(out, "bob", edits="adopt", class_names=CLASSES, image_ids=IDS)
    out.write_text(edited.replace("img_4,", "img_99,"))
    with pytest.raises(HandEditsError, match=r"line 4: image 'img_99' is not an image"):
        AnnotationStore(out, "bob", edits="adopt", class_names=CLASSES, image_ids=IDS)
    out.write_text(edited.replace("timestamp", "timestamp,note"))
    with pytest.raises(HandEditsError, match=r"cannot adopt the edits, its header.*rebuild"):
        AnnotationStore(out, "bob", edits="adopt", class_names=CLASSES, image_ids=IDS)
    assert len(rows(out.with_name("labels.csv.events.csv"))) == 3  # nothing was adopted
    with pytest.raises(ValueError, match="needs class_names and image_ids"):
        AnnotationStore(out, "bob", edits="adopt")


def test_rebuild_from_log_moves_the_edited_file_aside(tmp_path: Path) -> None:
    out, edited = labelled_then_edited(tmp_path)
    AnnotationStore(out, "alice", edits="rebuild").close()
    assert exported(out) == {"img_0": "sea", "img_1": "cars", "img_2": "airplane"}
    (aside,) = tmp_path.glob("labels.edited-*.csv")
    assert aside.read_text() == edited  # kept, never deleted
    out.write_text(edited)  # edited again: a second move never replaces the first
    AnnotationStore(out, "alice", edits="rebuild").close()
    assert sorted(p.read_text() for p in tmp_path.glob("labels.edited-*.csv")) == [edited] * 2


def test_a_crash_before_the_export_is_not_a_hand_edit(tmp_path: Path) -> None:
    """The log holds one event more than the file, written after it: rewrite, do not refuse."""
    out = tmp_path / "labels.csv"
    store = AnnotationStore(out, "alice")
    store.record("img_0", "label", "sea")
    with store.log.locked(exclusive=True):  # what record() does, up to the crash point
        store.log.append(Event("img_1", "cars", "alice", "2025-03-01T10:00:00.000+00:00", "label"))
    store.close()
    AnnotationStore(out, "alice").close()
    assert exported(out) == {"img_0": "sea", "img_1": "cars"}
    # The same content, but written by hand after the log (a second later): an edit.
    out.write_text("".join(out.read_text().splitlines(keepends=True)[:2]))
    log_time = store.log_path.stat().st_mtime_ns
    os.utime(out, ns=(log_time + 10**9, log_time + 10**9))
    with pytest.raises(HandEditsError, match=r"img_1 \(file: no row"):
        AnnotationStore(out, "alice")


def test_an_edit_while_running_is_refused_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    alice, bob = AnnotationStore(out, "alice"), AnnotationStore(out, "bob")
    alice.record("img_0", "label", "sea")
    bob.record("img_1", "label", "cars")  # another process's export is not an edit
    alice.record("img_2", "label", "cars")
    edited = out.read_text().replace("img_0,sea,", "img_0,airplane,")
    out.write_text(edited)
    with pytest.raises(HandEditsError, match=r"not recorded: .*img_0 \(file: 'airplane'"):
        bob.record("img_3", "label", "sea")
    assert out.read_text() == edited and len(rows(alice.log_path)) == 3
