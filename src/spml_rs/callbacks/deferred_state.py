"""Callback state that can arrive before the objects it belongs to exist.

AdaGC's EMA teacher and early-learning detector build what their checkpoint
state restores (a copy of the network, a detector sized to ``max_epochs``) in
``setup``, because only then are the module and the trainer known. A
checkpoint's callback state can be handed over before that: by Lightning
when it restores a checkpoint ahead of ``setup`` (e.g. for testing), or by
hand. :class:`DeferredStateCallback` keeps such a state and applies it once
``setup`` has built the objects, in one place for every such callback.
"""

from __future__ import annotations

import abc
from typing import Any

import lightning as L


class DeferredStateCallback(L.Callback, abc.ABC):
    """A callback whose checkpoint state is restored into objects built in ``setup``.

    Subclasses implement :attr:`is_set_up`, :meth:`current_state` and
    :meth:`restore_state`, and call :meth:`apply_pending_state` at the end of
    their ``setup``. An empty state (a callback that never ran) restores nothing.
    """

    _pending: dict[str, Any] | None = None

    @property
    @abc.abstractmethod
    def is_set_up(self) -> bool:
        """Whether the objects that the state restores into exist."""

    @abc.abstractmethod
    def current_state(self) -> dict[str, Any]:
        """The checkpoint state; called only once set up."""

    @abc.abstractmethod
    def restore_state(self, state: dict[str, Any]) -> None:
        """Load a non-empty checkpoint state; called only once set up."""

    def state_dict(self) -> dict[str, Any]:
        if not self.is_set_up:
            return dict(self._pending or {})  # not run yet: what it would restore, if anything
        return self.current_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        if not self.is_set_up:  # restored before setup: kept for apply_pending_state
            self._pending = dict(state_dict)
            return
        self.restore_state(state_dict)
        self._pending = None

    def apply_pending_state(self) -> None:
        """Restore the state that arrived before ``setup`` (no-op if none did)."""
        if self._pending is not None:
            self.load_state_dict(self._pending)
