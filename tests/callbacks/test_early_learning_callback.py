"""EarlyLearningCallback without a training run: settings and checkpoint state."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from spml_rs.callbacks.early_learning import EarlyLearningCallback


def test_unknown_signal_is_rejected() -> None:
    with pytest.raises(ValueError, match="signal"):
        EarlyLearningCallback(signal="loss")


def test_state_restored_before_setup_is_applied_in_setup() -> None:
    """Lightning may hand over the checkpoint state before ``setup`` built the detector."""
    trainer = SimpleNamespace(max_epochs=12)
    source = EarlyLearningCallback(windows=[2, 3])
    source.setup(trainer, None, "fit")  # type: ignore[arg-type]
    assert source.detector is not None
    for value in (0.1, 0.3, 0.4):
        source.detector.update(value)
    state = source.state_dict()

    restored = EarlyLearningCallback(windows=[2, 3])
    restored.load_state_dict(state)
    assert restored.detector is None and restored.state_dict() == state  # kept, not lost
    restored.setup(trainer, None, "fit")  # type: ignore[arg-type]
    assert restored.detector is not None
    assert restored.detector.signal == [0.1, 0.3, 0.4]
    assert restored.state_dict() == state
    # an empty state (a callback that never ran) restores nothing
    fresh = EarlyLearningCallback(windows=[2, 3])
    fresh.load_state_dict({})
    fresh.setup(trainer, None, "fit")  # type: ignore[arg-type]
    assert fresh.detector is not None and fresh.detector.signal == []
