"""spml_rs: single-positive multi-label scene classification for remote sensing.

The notebook API (:mod:`spml_rs.api`) is available at the top level and imported
lazily, so ``import spml_rs`` stays cheap and free of side effects:

* ``spml_rs.compose(overrides)`` -- the packaged Hydra config as a DictConfig;
* ``spml_rs.build(cfg)`` -- (datamodule, module, trainer);
* ``spml_rs.fit(cfg)`` -- fit + test + results.json (what ``python -m spml_rs.train`` runs);
* ``spml_rs.predict(module, datamodule, split)`` -- probabilities and labels of a split;
  ``spml_rs.predict(ckpt_path, input)`` -- a checkpoint on unlabelled images (a table).

``spml_rs.train`` is the command-line entry point module (``spml_rs.train.train(cfg)``
is the same function as ``spml_rs.fit``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["build", "compose", "fit", "predict"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from spml_rs import api

        return getattr(api, name)
    raise AttributeError(f"module 'spml_rs' has no attribute {name!r}")
