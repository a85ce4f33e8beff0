"""The model summary printed when fit starts: modules and parameter counts, no FLOPs.

Lightning's summary counts FLOPs only for a LightningModule with an
``example_input_array``; :class:`~spml_rs.module.SPMLModule` has none (the input
size belongs to the dataset), so every run printed "Total FLOPs: 0". This one
leaves the column and the total out and writes through the logging system, so
the summary also lands in ``<run dir>/train.log``.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

log = logging.getLogger(__name__)


class ParameterSummary(ModelSummary):
    """Top-level modules (name, type, parameters, mode) and the parameter totals.

    Args:
        max_depth: module depth shown, as in Lightning's ``ModelSummary`` (0: no summary).
    """

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        columns = dict(summary_data)
        rows = zip(
            columns["Name"], columns["Type"], columns["Params"], columns["Mode"], strict=True
        )
        lines = [
            f"  {name:<16} {kind:<28} {params:>8}  {mode}" for name, kind, params, mode in rows
        ]
        totals = (
            f"  {get_human_readable_count(trainable_parameters)} trainable parameters of "
            f"{get_human_readable_count(total_parameters)} ({model_size:.1f} MB)"
        )
        log.info("\n".join(["model:", *lines, totals]))
