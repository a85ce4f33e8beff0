"""Hand edits of the exported label file: found before any rewrite, never dropped silently.

The label file ``<out>`` is rewritten from the event log (the source of truth)
at start-up and after every action. A person may have edited it by hand in the
meantime (fixed a class, deleted a row); a rewrite would replace those edits
with the log's replay. So before each rewrite the store compares the file with
the replay, row by row (``image_id -> (class_name, annotator, timestamp)``):

* equal: the file is what the annotator wrote; rewrite it.
* the file holds the replay *without the log's last event*, and the file is not
  newer than the log: a crash between the log's fsync and the export. Every row
  of the file is in the log, so rewriting it loses nothing. (A person deleting
  the last labelled row makes the file newer than the log: an edit.)
* the file does not exist: rewritten from the log (nothing of it is lost).
* anything else: hand edits. The store stops (:class:`HandEditsError`) with a
  message naming both files, the first differing image ids and the two ways out:

  - ``adopt``: each edit becomes an event of the log, by the annotator who starts
    the tool (a changed or added row a ``label``, a deleted row a ``skip``), so the
    edits survive every later export and ``U`` takes them back one by one;
  - ``rebuild``: the edited file is moved aside (renamed, never deleted) and the
    file is rewritten from the log.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from spml_rs.fileio import fsync_directory

LABEL_COLUMNS = ("image_id", "class_name", "annotator", "timestamp")
#: what the store does when the label file holds hand edits
EDIT_POLICIES = ("refuse", "adopt", "rebuild")
#: the CLI flag of each way out, named in the messages
FLAGS = {"adopt": "--adopt-edits", "rebuild": "--rebuild-from-log"}
SHOWN = 5  # differing images named in a message

#: one row of the label file without its id: (class_name, annotator, timestamp)
LabelRow = tuple[str, str, str]


class HandEditsError(ValueError):
    """The label file differs from its event log's replay: it was edited by hand."""


@dataclass(frozen=True)
class LabelFile:
    """The parsed rows of a label file (``rows``), or why it is not one (``problem``)."""

    rows: dict[str, LabelRow]
    lines: dict[str, int]  # image id -> line of its row, for messages
    problem: str | None = None


@dataclass(frozen=True)
class Difference:
    """One image whose row in the file differs from the log's (None: no row)."""

    image_id: str
    in_file: LabelRow | None
    in_log: LabelRow | None


@dataclass(frozen=True)
class HandEdits:
    """What the file holds that the log does not."""

    differences: list[Difference]
    file: LabelFile


def render_label_file(rows: dict[str, LabelRow]) -> bytes:
    """The label file's bytes: the header, then one row per labelled image, sorted by id."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LABEL_COLUMNS)
    for image_id in sorted(rows):
        writer.writerow([image_id, *rows[image_id]])
    return buffer.getvalue().encode("utf-8")


def read_label_file(path: Path) -> LabelFile:
    """Parse ``path`` as the annotator writes it; any deviation is a ``problem``."""
    rows: dict[str, LabelRow] = {}
    lines: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        if tuple(header) != LABEL_COLUMNS:
            problem = f"its header is {header}, the annotator writes {list(LABEL_COLUMNS)}"
            return LabelFile(rows, lines, problem)
        for row in reader:
            line = reader.line_num
            if len(row) != len(LABEL_COLUMNS):
                problem = f"line {line} has {len(row)} fields, expected {len(LABEL_COLUMNS)}"
                return LabelFile(rows, lines, problem)
            if row[0] in rows:
                problem = f"line {line} repeats image {row[0]!r} (first on line {lines[row[0]]})"
                return LabelFile(rows, lines, problem)
            rows[row[0]], lines[row[0]] = (row[1], row[2], row[3]), line
    return LabelFile(rows, lines)


def differences(in_file: dict[str, LabelRow], in_log: dict[str, LabelRow]) -> list[Difference]:
    """Images whose rows differ, sorted by id."""
    ids = sorted(i for i in in_file.keys() | in_log.keys() if in_file.get(i) != in_log.get(i))
    return [Difference(i, in_file.get(i), in_log.get(i)) for i in ids]


def find_hand_edits(
    out: Path,
    log_path: Path,
    in_log: dict[str, LabelRow],
    before_last: Callable[[], dict[str, LabelRow]],
) -> HandEdits | None:
    """The hand edits of ``out`` (None: none), given the log's rows now and before its last event.

    A file that matches ``before_last()`` (computed only when needed) and is
    not newer than the log is a crash between the log's append and the export, not
    an edit (see the module doc). A missing file has no edits: the log rebuilds it.
    """
    if not out.exists():
        return None
    file = read_label_file(out)
    if file.problem is None:
        if file.rows == in_log:
            return None
        # mtimes advance by clock ticks (ms): equal means "written in the same tick", which
        # a crash can do and a person editing the file cannot.
        log_is_newer = log_path.stat().st_mtime_ns >= out.stat().st_mtime_ns
        if log_is_newer and file.rows == before_last():
            return None
    return HandEdits(differences(file.rows, in_log), file)


def edits_message(out: Path, log_path: Path, edits: HandEdits, annotator: str) -> str:
    """Why the annotator stops, and both ways out."""
    found = edits.file.problem or (
        f"it differs from the replay of its event log {log_path} at "
        f"{len(edits.differences)} image(s): "
        + "; ".join(_describe(d) for d in edits.differences[:SHOWN])
        + ("; ..." if len(edits.differences) > SHOWN else "")
    )
    adopt = (
        "log the file's edits as choices of "
        f"{annotator!r} (a changed or added row becomes a label, a deleted row a skip; "
        "U takes them back)"
    )
    if edits.file.problem:
        adopt = "not possible until the file is a valid label file again"
    return (
        f"{out} was edited by hand: {found}. The annotator rewrites this file from the log, "
        "which would drop the edits, so it stops. Start it again with one of:\n"
        f"  {FLAGS['adopt']:<18}  keep the edits: {adopt}\n"
        f"  {FLAGS['rebuild']:<18}  rewrite {out.name} from the log, after moving the edited "
        f"file aside to {out.stem}.edited-<UTC time>{out.suffix} (kept, never deleted)"
    )


def _describe(difference: Difference) -> str:
    file, log = difference.in_file, difference.in_log
    if file is None or log is None or file[0] != log[0]:
        return f"{difference.image_id} (file: {_shown(file)}, log: {_shown(log)})"
    return f"{difference.image_id} (file: {_shown(file, True)}, log: {_shown(log, True)})"


def _shown(row: LabelRow | None, provenance: bool = False) -> str:
    if row is None:
        return "no row"
    return f"{row[0]!r} by {row[1]!r} at {row[2]}" if provenance else repr(row[0])


def adoption_actions(
    out: Path,
    edits: HandEdits,
    class_names: Collection[str],
    image_ids: Collection[str],
) -> list[tuple[str, str, str]]:
    """``(image_id, action, class_name)`` that make the log's replay hold the file's edits.

    Every row is checked first (known image, known class), so a bad edit adopts
    nothing: the error names the file, the line, the id and what was expected.
    """
    if edits.file.problem:
        raise HandEditsError(
            f"{out}: cannot adopt the edits, {edits.file.problem}; fix the file or start with "
            f"{FLAGS['rebuild']}"
        )
    actions = []
    for difference in edits.differences:
        image_id, line = difference.image_id, edits.file.lines.get(difference.image_id)
        if difference.in_file is None:
            actions.append((image_id, "skip", ""))
            continue
        if image_id not in image_ids:
            raise HandEditsError(
                f"{out} line {line}: image {image_id!r} is not an image of this dataset and "
                "split; expected one of the ids the annotator shows (nothing was adopted)"
            )
        class_name = difference.in_file[0]
        if class_name not in class_names:
            raise HandEditsError(
                f"{out} line {line}: class {class_name!r} of image {image_id!r} is not a class "
                f"of this dataset; expected one of {sorted(class_names)} (nothing was adopted)"
            )
        actions.append((image_id, "label", class_name))
    return actions


def aside_name(out: Path, taken: Iterable[Path] = ()) -> Path:
    """``<stem>.edited-<UTC time>.csv`` next to ``out`` (``-1``, ``-2`` ... if that exists)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    taken = set(taken)
    for n in range(1000):
        candidate = out.with_name(f"{out.stem}.edited-{stamp}{f'-{n}' if n else ''}{out.suffix}")
        if candidate not in taken and not candidate.exists():
            return candidate
    raise FileExistsError(f"{out}: no free name to move the edited file aside to")


def move_aside(out: Path) -> Path:
    """Rename ``out`` to :func:`aside_name`; a hard link first, so nothing is ever replaced."""
    tried: list[Path] = []
    while True:
        target = aside_name(out, tried)
        try:
            os.link(out, target)  # fails if target exists: no overwrite, even in a race
        except FileExistsError:
            tried.append(target)
            continue
        os.unlink(out)
        fsync_directory(out.parent)
        return target
