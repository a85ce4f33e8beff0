"""Durable annotations: an append-only event log and the label file exported from it.

The log (``<out>.events.csv``) is the source of truth. One CSV row per action::

    image_id,class_name,annotator,timestamp,action

``action`` is ``label`` (``class_name`` chosen), ``skip`` (none of the classes
fits / do not know; ``class_name`` empty) or ``undo`` (takes back the
annotator's latest label or skip that is not yet undone; ``class_name`` holds
the image's class after the undo, empty if it has none). Hence the rule a reader
needs: *the last row of an image wins, an empty class_name means no label*.

Every action is appended under an exclusive ``fcntl.flock`` and fsynced before
the server answers, so a choice is on disk the moment the page moves on. Rows
are never rewritten: a crash can at worst leave an unterminated last line,
which the next writer terminates and every reader skips with a warning. Several
processes (annotators with different names) may append to one log; each reads
the rows the others wrote before acting.

After each action the label file ``<out>`` (``image_id,class_name,annotator,
timestamp``; one row per labelled image, the format ``label_mode=manual``
reads) is rewritten atomically (temporary file, fsync, rename) from the log.
Before any rewrite, at start-up and whenever the file changed since this
process wrote it, the file is compared with the log's replay: hand edits stop
the store instead of being dropped (:mod:`annotator.label_edits`).
"""

from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from annotator.label_edits import (
    EDIT_POLICIES,
    LABEL_COLUMNS,
    HandEdits,
    HandEditsError,
    LabelRow,
    adoption_actions,
    edits_message,
    find_hand_edits,
    move_aside,
    render_label_file,
)
from spml_rs.fileio import atomic_write_bytes, fsync_directory

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("image_id", "class_name", "annotator", "timestamp", "action")
__all__ = ["LABEL_COLUMNS", "AnnotationStore", "Event", "EventLog", "HandEditsError", "Replay"]
ACTIONS = ("label", "skip", "undo")


@dataclass(frozen=True)
class Event:
    """One row of the log."""

    image_id: str
    class_name: str
    annotator: str
    timestamp: str
    action: str

    def row(self) -> list[str]:
        return [self.image_id, self.class_name, self.annotator, self.timestamp, self.action]


@dataclass(frozen=True)
class ImageState:
    """What an image holds now: a label (``class_name``) or a skip, and the event that set it."""

    action: str  # "label" or "skip"
    class_name: str
    annotator: str
    timestamp: str
    seq: int  # position of the setting event in the log


@dataclass
class Replay:
    """The state of every image and every annotator's undo stack, from the log's events."""

    states: dict[str, ImageState] = field(default_factory=dict)
    #: per annotator: log positions of their labels/skips not yet undone, oldest first
    stacks: dict[str, list[int]] = field(default_factory=dict)
    #: per label/skip event: the image's state just before it
    before: dict[int, ImageState | None] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def apply(self, event: Event) -> None:
        seq = len(self.events)
        self.events.append(event)
        if event.action == "undo":
            self._undo(event, seq)
            return
        self.before[seq] = self.states.get(event.image_id)
        self.states[event.image_id] = ImageState(
            event.action, event.class_name, event.annotator, event.timestamp, seq
        )
        self.stacks.setdefault(event.annotator, []).append(seq)

    def _undo(self, event: Event, seq: int) -> None:
        target = self.undo_target(event.annotator)
        if target is None or self.events[target].image_id != event.image_id:
            log.warning("event log row %d: undo matches no earlier action; ignored", seq + 2)
            return
        self.stacks[event.annotator].pop()
        current = self.states.get(event.image_id)
        if current is not None and current.seq != target:
            # Someone changed the image since: their choice stands, and undoing theirs
            # later must not bring back the action taken back here.
            for later, state in self.before.items():
                if state is not None and state.seq == target:
                    self.before[later] = self.before[target]
            return
        restored = self.before[target]
        if restored is None:
            self.states.pop(event.image_id, None)
        else:
            self.states[event.image_id] = restored

    def undo_target(self, annotator: str) -> int | None:
        """Log position of the action ``annotator``'s next undo takes back."""
        stack = self.stacks.get(annotator)
        return stack[-1] if stack else None

    def state_after_undo(self, annotator: str) -> tuple[str, str] | None:
        """(image id, class name afterwards, "" if none) of the next undo, without applying it."""
        target = self.undo_target(annotator)
        if target is None:
            return None
        image_id = self.events[target].image_id
        current = self.states.get(image_id)
        after = self.before[target] if current is None or current.seq == target else current
        return image_id, after.class_name if after and after.action == "label" else ""


def replay_of(events: Iterable[Event]) -> Replay:
    """A fresh replay of ``events``."""
    replay = Replay()
    for event in events:
        replay.apply(event)
    return replay


def label_rows(replay: Replay) -> dict[str, LabelRow]:
    """The label file's rows of ``replay``: labelled images only (a skip has no row)."""
    return {
        image_id: (state.class_name, state.annotator, state.timestamp)
        for image_id, state in replay.states.items()
        if state.action == "label"
    }


def now() -> str:
    """UTC timestamp, ISO 8601 with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class EventLog:
    """The append-only CSV log, shared by any number of processes through ``flock``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        if created:  # make the new name itself durable
            fsync_directory(self.path.parent)
        self._offset = 0
        self._line = 0

    def close(self) -> None:
        os.close(self._fd)

    @contextmanager
    def locked(self, exclusive: bool) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def read_new(self) -> list[Event]:
        """Complete rows appended since the last call (hold the lock)."""
        size = os.fstat(self._fd).st_size
        chunk = os.pread(self._fd, size - self._offset, self._offset)
        end = chunk.rfind(b"\n") + 1  # an unterminated last line is not complete yet
        self._offset += end
        events = []
        # Row by row: fields never hold a newline, so a torn quoted field of a crashed
        # write cannot swallow the rows after it.
        for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
            self._line += 1
            row = next(csv.reader([line]), [])
            event = self._parse(row)
            if event is not None:
                events.append(event)
        return events

    def _parse(self, row: list[str]) -> Event | None:
        if self._line == 1:
            if tuple(row) != EVENT_COLUMNS:
                raise ValueError(
                    f"{self.path}: not an annotator event log (header {row}, "
                    f"expected {list(EVENT_COLUMNS)})"
                )
            return None
        if len(row) != len(EVENT_COLUMNS) or row[4] not in ACTIONS:
            log.warning("%s line %d: malformed row %r skipped", self.path, self._line, row)
            return None
        return Event(*row)

    def append(self, event: Event) -> None:
        """Append one row durably (hold the exclusive lock and have read all rows)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        size = os.fstat(self._fd).st_size
        if size == 0:
            writer.writerow(EVENT_COLUMNS)
        elif os.pread(self._fd, 1, size - 1) != b"\n":
            buffer.write("\n")  # close a line a crash left unterminated
        writer.writerow(event.row())
        os.write(self._fd, buffer.getvalue().encode("utf-8"))
        os.fsync(self._fd)


class AnnotationStore:
    """The log, its replayed state and the exported label file.

    Args:
        out: the label file to export (``label_mode=manual`` reads it); the log
            is ``<out>.events.csv`` next to it.
        annotator: name written on this process's rows.
        edits: what to do when ``out`` holds hand edits (rows the log's replay
            does not): ``refuse`` (raise :class:`HandEditsError`), ``adopt`` (log
            them as this annotator's choices) or ``rebuild`` (move the file
            aside, rewrite it from the log).
        class_names, image_ids: the dataset's classes and ids; ``adopt`` checks
            every edited row against them (required with it).
    """

    def __init__(
        self,
        out: str | Path,
        annotator: str,
        *,
        edits: str = "refuse",
        class_names: Collection[str] | None = None,
        image_ids: Collection[str] | None = None,
    ) -> None:
        if not annotator or any(ch in annotator for ch in "\r\n"):
            raise ValueError(f"annotator name must be a non-empty single line, got {annotator!r}")
        self.out = Path(out)
        if self.out.suffix == ".parquet":
            raise ValueError(f"{self.out}: the annotator writes CSV; give --out a .csv name")
        self.log_path = self.out.with_name(self.out.name + ".events.csv")
        if self.out.exists() and not self.log_path.exists():
            raise FileExistsError(
                f"{self.out} exists but has no event log {self.log_path}: it was not written by "
                "the annotator; refusing to overwrite it (choose another --out)"
            )
        if edits not in EDIT_POLICIES:
            raise ValueError(f"edits must be one of {EDIT_POLICIES}, got {edits!r}")
        if edits == "adopt" and (class_names is None or image_ids is None):
            raise ValueError("edits='adopt' needs class_names and image_ids to check the rows")
        self.annotator = annotator
        # flock excludes other processes only: the server's threads also take this lock.
        self._thread_lock = threading.Lock()
        self.log = EventLog(self.log_path)
        self.replay = Replay()
        with self.log.locked(exclusive=True):
            self._catch_up()
            self._resolve_hand_edits(edits, class_names or (), image_ids or ())
            if self.replay.events:
                self._export()
            self._written = self._signature()

    def _catch_up(self) -> None:
        for event in self.log.read_new():
            self.replay.apply(event)

    def refresh(self) -> Replay:
        """Read rows other processes appended; return the current state."""
        with self._thread_lock, self.log.locked(exclusive=False):
            self._catch_up()
        return self.replay

    def record(self, image_id: str, action: str, class_name: str = "") -> Event | None:
        """Append a ``label``/``skip``/``undo`` by this annotator; None when nothing to undo."""
        with self._thread_lock, self.log.locked(exclusive=True):
            self._catch_up()
            if action == "undo":
                preview = self.replay.state_after_undo(self.annotator)
                if preview is None:
                    return None
                image_id, class_name = preview
            self._check_not_edited()
            event = self._append(image_id, action, class_name)
            self._export()
        return event

    def _append(self, image_id: str, action: str, class_name: str) -> Event:
        """Log one action of this annotator (hold the exclusive lock, caught up)."""
        event = Event(image_id, class_name, self.annotator, now(), action)
        if action not in ACTIONS or any("\n" in f or "\r" in f for f in event.row()):
            raise ValueError(f"cannot log {event}: unknown action or a line break in a field")
        self.log.append(event)
        self._catch_up()  # reads the row back: the replay holds what the disk holds
        return event

    def _export(self) -> None:
        atomic_write_bytes(self.out, render_label_file(label_rows(self.replay)))
        self._written = self._signature()

    # ------------------------------------------------------------- hand edits
    def _signature(self) -> tuple[int, int, int] | None:
        """Identity of the label file on disk: any rewrite or edit changes it."""
        try:
            st = os.stat(self.out)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _hand_edits(self) -> HandEdits | None:
        events = self.replay.events

        def before_last() -> dict[str, LabelRow]:
            return label_rows(replay_of(events[:-1]))

        return find_hand_edits(self.out, self.log_path, label_rows(self.replay), before_last)

    def _resolve_hand_edits(
        self, policy: str, class_names: Collection[str], image_ids: Collection[str]
    ) -> None:
        """At start-up: refuse, adopt or set aside the hand edits of the label file."""
        edits = self._hand_edits()
        if edits is None:
            return
        if policy == "refuse":
            raise HandEditsError(edits_message(self.out, self.log_path, edits, self.annotator))
        if policy == "rebuild":
            moved = move_aside(self.out)
            log.warning("moved the hand-edited %s aside to %s; rewriting it from %s",
                        self.out, moved, self.log_path)  # fmt: skip
            return
        actions = adoption_actions(self.out, edits, class_names, image_ids)
        for image_id, action, class_name in actions:
            self._append(image_id, action, class_name)
        log.warning("adopted %d hand edit(s) of %s into %s as choices of %r",
                    len(actions), self.out, self.log_path, self.annotator)  # fmt: skip

    def _check_not_edited(self) -> None:
        """While running: refuse to record when the file changed by hand since the last export."""
        if self._signature() == self._written:  # still the file this process wrote
            return
        edits = self._hand_edits()  # another annotator's export, or an edit?
        if edits is not None:
            raise HandEditsError(
                "this choice was not recorded: "
                + edits_message(self.out, self.log_path, edits, self.annotator)
            )

    def close(self) -> None:
        self.log.close()
