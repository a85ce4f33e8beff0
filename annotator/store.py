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
"""

from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from spml_rs.fileio import atomic_write_bytes, fsync_directory

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("image_id", "class_name", "annotator", "timestamp", "action")
LABEL_COLUMNS = ("image_id", "class_name", "annotator", "timestamp")
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
    """

    def __init__(self, out: str | Path, annotator: str) -> None:
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
        self.annotator = annotator
        # flock excludes other processes only: the server's threads also take this lock.
        self._thread_lock = threading.Lock()
        self.log = EventLog(self.log_path)
        self.replay = Replay()
        with self.log.locked(exclusive=True):
            self._catch_up()
            if self.replay.events:
                self._export()

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
            event = Event(image_id, class_name, self.annotator, now(), action)
            if action not in ACTIONS or any("\n" in f or "\r" in f for f in event.row()):
                raise ValueError(f"cannot log {event}: unknown action or a line break in a field")
            self.log.append(event)
            self._catch_up()  # reads the row back: the replay holds what the disk holds
            self._export()
        return event

    def _export(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(LABEL_COLUMNS)
        for image_id in sorted(self.replay.states):
            state = self.replay.states[image_id]
            if state.action == "label":
                writer.writerow([image_id, state.class_name, state.annotator, state.timestamp])
        atomic_write_bytes(self.out, buffer.getvalue().encode("utf-8"))

    def close(self) -> None:
        self.log.close()
