"""Running ``python -m spml_rs.<entry point>`` as a user does, for the entry-point tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_entry(
    module: str, *args: str, cache: Path, cwd: Path, ok: bool = True, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m spml_rs.<module> args`` in ``cwd``, offline, with the synthetic cache ``cache``.

    ``ok``: assert it succeeds (else that it fails); the output is in the assertion message.
    """
    env = {**os.environ, "SPML_RS_CACHE": str(cache), "WANDB_MODE": "offline"}
    done = subprocess.run(
        [sys.executable, "-m", f"spml_rs.{module}", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout[-4000:] + done.stderr[-4000:]
    assert (done.returncode == 0) == ok, output
    return done


def read_metrics(path: Path) -> dict[str, Any]:
    """The ``metrics`` of a results file (``results.json``, ``results_<split>_<time>.json``)."""
    metrics: dict[str, Any] = json.loads(path.read_text())["metrics"]
    return metrics
