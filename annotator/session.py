"""One annotation session: which images, in which order, which candidates, how far along.

The page shows one image and a batch of four candidate classes. The classes of
an image are shuffled with a generator seeded by ``(seed, image id)``, so a
reload (or a restart) shows the same candidates; "next batch" walks through the
rest of that permutation. Images come in dataset order or a seeded shuffle; a
subset is the first ``limit`` of that order.
"""

from __future__ import annotations

import itertools
import random
import statistics
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from annotator.sources import ImageSource
from annotator.store import AnnotationStore, Replay

BATCH_SIZE = 4
ORDERS = ("seeded", "dataset")
#: pauses longer than this between two choices are breaks, not labelling time
MAX_GAP_S = 300.0
RATE_WINDOW = 20


class InvalidRequest(ValueError):
    """A request names a class or an image the session does not offer (HTTP 400)."""


def candidate_batches(
    class_names: Sequence[str], image_id: str, seed: int, size: int = BATCH_SIZE
) -> list[tuple[str, ...]]:
    """All classes in a per-image shuffled order, cut into batches of ``size``.

    ``random.Random`` seeded with a string hashes it with SHA-512, so the order
    does not depend on ``PYTHONHASHSEED``: stable across reloads and restarts.
    """
    order = list(class_names)
    random.Random(f"{seed}/{image_id}").shuffle(order)
    return [tuple(order[i : i + size]) for i in range(0, len(order), size)]


def select_images(
    image_ids: Sequence[str], order: str, seed: int, limit: int | None
) -> tuple[str, ...]:
    """The session's images: dataset order or a seeded shuffle, cut to the first ``limit``."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    ids = list(image_ids)
    if order == "seeded":
        random.Random(f"order/{seed}").shuffle(ids)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        ids = ids[:limit]
    if not ids:
        raise ValueError("no image to annotate")
    return tuple(ids)


class AnnotationSession:
    """Images, candidates, navigation and progress on top of a source and a store."""

    def __init__(
        self,
        source: ImageSource,
        store: AnnotationStore,
        *,
        order: str = "seeded",
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.seed = seed
        self.image_ids = select_images(source.image_ids, order, seed, limit)
        self.position = {image_id: i for i, image_id in enumerate(self.image_ids)}
        # The server is threaded: one request at a time reads or changes the replay.
        self._lock = threading.RLock()

    # ------------------------------------------------------------ validation
    def check_image(self, image_id: object) -> str:
        if not isinstance(image_id, str) or image_id not in self.position:
            raise InvalidRequest(f"unknown image id {image_id!r} (not in this session)")
        return image_id

    def check_class(self, image_id: str, class_name: object, batch: object) -> str:
        if not isinstance(class_name, str) or class_name not in self.source.class_names:
            raise InvalidRequest(
                f"unknown class {class_name!r}; expected one of {list(self.source.class_names)}"
            )
        batches = candidate_batches(self.source.class_names, image_id, self.seed)
        # bool is an int subclass: True must not pass as batch 1
        if isinstance(batch, bool) or not isinstance(batch, int) or not 0 <= batch < len(batches):
            raise InvalidRequest(f"batch must be an integer in [0, {len(batches)}), got {batch!r}")
        if class_name not in batches[batch]:
            raise InvalidRequest(
                f"class {class_name!r} is not among the candidates shown for {image_id!r} "
                f"(batch {batch}: {list(batches[batch])})"
            )
        return str(class_name)

    # ----------------------------------------------------------------- items
    def first_open(self, replay: Replay, start: int) -> int | None:
        """First image from ``start`` on (wrapping around) with neither label nor skip."""
        total = len(self.image_ids)
        for step in range(total):
            pos = (start + step) % total
            if self.image_ids[pos] not in replay.states:
                return pos
        return None

    def item(self, pos: int, batch: int | None = None) -> dict[str, Any]:
        """Everything the page shows for image ``pos`` (clamped into range)."""
        with self._lock:
            replay = self.store.refresh()
            pos = min(max(pos, 0), len(self.image_ids) - 1)
            image_id = self.image_ids[pos]
            batches = candidate_batches(self.source.class_names, image_id, self.seed)
            state = replay.states.get(image_id)
            if batch is None:  # show the batch holding the current label, if any
                batch = next(
                    (b for b, c in enumerate(batches) if state and state.class_name in c), 0
                )
            batch %= len(batches)
            following = self.first_open(replay, pos + 1)
            return {
                "pos": pos,
                "image_id": image_id,
                "image_url": image_url(image_id),
                "pixelated": self.source.pixelated,
                "batch": batch,
                "num_batches": len(batches),
                "candidates": list(batches[batch]),
                "state": None if state is None else {
                    "action": state.action, "class_name": state.class_name,
                    "annotator": state.annotator, "timestamp": state.timestamp,
                },
                "prefetch": None if following is None else image_url(self.image_ids[following]),
                "progress": self.progress(replay),
            }  # fmt: skip

    def resume(self) -> dict[str, Any]:
        """The first image without a label or a skip (the last one if all are done)."""
        with self._lock:
            pos = self.first_open(self.store.refresh(), 0)
            return self.item(len(self.image_ids) - 1 if pos is None else pos)

    # --------------------------------------------------------------- actions
    def label(self, image_id: object, class_name: object, batch: object) -> dict[str, Any]:
        with self._lock:
            image_id = self.check_image(image_id)
            self.store.record(image_id, "label", self.check_class(image_id, class_name, batch))
            return self._advance(self.position[image_id])

    def skip(self, image_id: object) -> dict[str, Any]:
        with self._lock:
            image_id = self.check_image(image_id)
            self.store.record(image_id, "skip")
            return self._advance(self.position[image_id])

    def undo(self) -> dict[str, Any] | None:
        """Take back this annotator's latest action; show that image (None: nothing to undo)."""
        with self._lock:
            event = self.store.record("", "undo")
            if event is None:
                return None
            pos = self.position.get(event.image_id)
            if pos is None:  # an action of an earlier session on another subset
                return self.resume()
            return self.item(pos)

    def _advance(self, pos: int) -> dict[str, Any]:
        following = self.first_open(self.store.refresh(), pos + 1)
        return self.item(pos + 1 if following is None else following)

    # -------------------------------------------------------------- progress
    def progress(self, replay: Replay) -> dict[str, Any]:
        """Done / total, this annotator's pace and the time left at that pace."""
        done = sum(1 for image_id in replay.states if image_id in self.position)
        remaining = len(self.image_ids) - done
        seconds = self._seconds_per_image(replay)
        return {
            "done": done,
            "total": len(self.image_ids),
            "per_minute": None if seconds is None else 60.0 / seconds,
            "eta_s": None if seconds is None else remaining * seconds,
            "annotator": self.store.annotator,
        }

    def _seconds_per_image(self, replay: Replay) -> float | None:
        """Median gap between this annotator's recent choices, breaks left out."""
        mine: list[datetime] = []
        for event in reversed(replay.events):
            if event.annotator == self.store.annotator and event.action != "undo":
                mine.insert(0, datetime.fromisoformat(event.timestamp))
                if len(mine) > RATE_WINDOW:
                    break
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(mine)]
        gaps = [g for g in gaps if 0 < g <= MAX_GAP_S]
        return statistics.median(gaps) if gaps else None


def image_url(image_id: str) -> str:
    return "/image/" + quote(image_id, safe="")
