"""Predict with a trained checkpoint on images without labels: ``python -m spml_rs.predict``.

    python -m spml_rs.predict ckpt_path=<checkpoint> input=<LMDB | image folder | GeoTIFF folder> \
        output=predictions.parquet [thresholds=val] [metadata=<metadata.parquet> split=test]

The checkpoint is enough: the network, its input bands and the device-side
preprocessing of training come from its stored config (:mod:`spml_rs.run_config`).
Writes one row per image: ``image_id``, one probability ``p_<class>`` per class,
and ``predicted``, the classes above their threshold (:func:`spml_rs.inference.thresholds_for`).
Reading and decoding run in DataLoader workers, scoring in batches on the GPU
when there is one, with a progress bar. An existing output is never replaced
without ``overwrite=true``. The work is :func:`spml_rs.inference.predict_images`'s.

This module shares its name with the notebook function ``spml_rs.predict``
(:func:`spml_rs.api.predict`). Importing it makes it the package's ``predict``
attribute, so the module object is made callable as that function: ``spml_rs.predict(...)``
means the same whether or not this module was imported.
"""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

from spml_rs import runtime

# Before torch is imported: libgomp reads its wait policy once, when it loads.
runtime.prefer_passive_openmp_waiting()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from spml_rs.inference import predict_images  # noqa: E402

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    runtime.set_up_process(log)
    predict_images(cfg)


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`spml_rs.api.predict` (see the module docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from spml_rs.api import predict

        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
