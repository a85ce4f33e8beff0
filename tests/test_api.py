"""The notebook API (spml_rs.compose / build / fit / predict) and the quickstart notebook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import spml_rs
from spml_rs.data.base import SPMLDataModule
from spml_rs.module import SPMLModule
from spml_testing import TINY

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_import_is_lazy() -> None:
    """``import spml_rs`` must not pull in torch, Lightning or Hydra."""
    code = "import sys, spml_rs; print(sorted(m for m in ('torch', 'lightning', 'hydra') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = spml_rs.nope  # type: ignore[attr-defined]


def test_compose_matches_command_line_defaults(tmp_path: Path) -> None:
    cfg = spml_rs.compose(["method=full", "dataset=synthetic_rgb"], output_dir=tmp_path)
    assert cfg.method.name == "full"
    assert cfg.dataset.datamodule.preset == "rgb"
    assert cfg.paths.output_dir == str(tmp_path)
    # Interpolations resolve outside a Hydra run (no ${hydra:...} left behind).
    assert cfg.callbacks.model_checkpoint.dirpath == f"{tmp_path}/checkpoints"
    test_cfg = spml_rs.compose(["ckpt_path=x.ckpt"], config_name="test", output_dir=tmp_path)
    assert test_cfg.split == "test"


def test_compose_default_output_dir_under_log_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPML_RS_LOGS", str(tmp_path))
    cfg = spml_rs.compose()
    assert Path(cfg.paths.output_dir).parent == tmp_path / "notebook"


def test_compose_reports_bad_override(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="method"):
        spml_rs.compose(["method=does_not_exist"], output_dir=tmp_path)


def test_build_fit_predict(tmp_path: Path, cache_dir: Path) -> None:
    cfg = spml_rs.compose([*TINY, f"paths.cache_dir={cache_dir}"], output_dir=tmp_path)
    datamodule, module, trainer = spml_rs.build(cfg)
    assert isinstance(datamodule, SPMLDataModule) and isinstance(module, SPMLModule)
    assert trainer.max_epochs == 1
    trainer.fit(module, datamodule=datamodule)
    out = spml_rs.predict(module, datamodule, split="val")
    expected = (cfg.dataset.datamodule.num_val, len(datamodule.class_names))
    assert out["probs"].shape == out["labels"].shape == expected
    assert float(out["probs"].min()) >= 0.0 and float(out["probs"].max()) <= 1.0
    assert out["images"].dtype.is_floating_point  # normalised on the way, as in evaluation
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_build_pins_the_wandb_run_like_train(tmp_path: Path, cache_dir: Path) -> None:
    """``spml_rs.build`` is the command line's builder: a W&B logger gets the run dir's id."""
    from lightning.pytorch.loggers import WandbLogger

    from spml_rs.resume import wandb_run_id

    cfg = spml_rs.compose(
        [*TINY, f"paths.cache_dir={cache_dir}", "logger=wandb"], output_dir=tmp_path
    )
    _, _, trainer = spml_rs.build(cfg)
    (wandb,) = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    assert wandb.version == wandb_run_id(tmp_path)


def test_fit_writes_results(tmp_path: Path, cache_dir: Path) -> None:
    cfg = spml_rs.compose([*TINY, f"paths.cache_dir={cache_dir}"], output_dir=tmp_path)
    metrics = spml_rs.fit(cfg)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["metrics"]["test/mAP_macro"] == pytest.approx(float(metrics["test/mAP_macro"]))


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path: Path, monkeypatch) -> None:
    """Runs every cell of notebooks/quickstart.ipynb in a fresh kernel (~20-60 s on 2 cores)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("SPML_RS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SPML_RS_LOGS", str(tmp_path / "logs"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no prediction plot"
    text = "".join(o.get("text", "") for o in outputs)
    assert "observed positives per training image: 1.0" in text
    assert (tmp_path / "logs" / "notebook").is_dir()
