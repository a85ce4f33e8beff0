"""Process set-up of the training entry point: CPU threads, logging, noise, signals.

What a training process must get right around the training itself, one
function each, called by :mod:`spml_rs.train`:

* **Threads.** OpenMP's idle threads busy-wait (libgomp spins for 300,000
  iterations before sleeping, at every parallel region's end), which is harmless
  on an idle machine and ruinous on a shared one: the spinning threads take the
  cores the other processes, and this process's own main thread, need.
  :func:`prefer_passive_openmp_waiting` makes them sleep; it must run before
  torch is imported, because libgomp reads its environment once, when it is
  loaded. :func:`configure_threads` sizes torch's intra-op pool by the CPUs this
  process may use (affinity mask, cgroup quota) rather than the machine's cores.
  ``benchmarks/loaded_job.py`` measures both.
* **Logging.** :func:`route_library_logs` sends Lightning's messages and Python
  warnings through the root logger that Hydra configures, so they reach
  ``<run dir>/train.log`` as well as the terminal.
* **Noise.** :func:`silence_known_noise` drops a fixed list of messages that tell
  a user of this project nothing, each matched by its text and origin.
* **Signals.** :func:`exit_on_sigterm` turns Lightning's graceful SIGTERM stop,
  which leaves the process with exit code 0, into exit code 143 (128 + SIGTERM)
  outside SLURM.
* **Launcher.** :class:`LauncherNodesCheck`, a Hydra callback, refuses a sweep
  whose ``hydra.launcher.nodes`` contradicts ``trainer.num_nodes`` before any job
  is submitted.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import warnings
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback as HydraCallback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

#: the variables that set libgomp's wait policy; a user's choice is never replaced
WAIT_POLICY_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SIGTERM_EXIT_CODE = 128 + int(signal.SIGTERM)
#: loggers Lightning gives their own stderr handler when imported (``lightning`` always does)
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


# ------------------------------------------------------------------- threads
def prefer_passive_openmp_waiting(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the wait policy was chosen; True if set.

    Call before torch is imported (libgomp reads the variable when it is loaded).
    """
    if any(name in environ for name in WAIT_POLICY_VARIABLES):
        return False
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    The mask is what ``taskset``, SLURM's ``--cpus-per-task`` and
    ``docker --cpuset-cpus`` restrict; a quota (``docker --cpus``, Kubernetes CPU
    limits) leaves the mask whole and caps the CPU time instead.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(count, quota)) if quota else count


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """ceil(quota / period) of this process's cgroup (v2 ``cpu.max``, v1 ``cfs_quota_us``), or None."""
    v2 = root / "cpu.max"
    if v2.is_file():
        quota, _, period = v2.read_text().partition(" ")
        return _cpus(quota, period)
    v1 = root / "cpu"
    if (v1 / "cpu.cfs_quota_us").is_file():
        return _cpus((v1 / "cpu.cfs_quota_us").read_text(), (v1 / "cpu.cfs_period_us").read_text())
    return None


def _cpus(quota: str, period: str) -> int | None:
    quota, period = quota.strip(), period.strip()
    if quota in ("max", "-1") or not period:
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def configure_threads(environ: MutableMapping[str, str] = os.environ) -> int:
    """Give torch one intra-op thread per available CPU, unless ``OMP_NUM_THREADS`` is set.

    torch's default is the machine's physical core count, which ignores affinity
    masks and quotas. Under DDP, Lightning later splits the CPUs between the
    processes (it sets ``OMP_NUM_THREADS`` for them). Returns the thread count.
    """
    import torch

    if "OMP_NUM_THREADS" not in environ:
        torch.set_num_threads(available_cpus())
    return torch.get_num_threads()


def thread_settings(environ: MutableMapping[str, str] = os.environ) -> dict[str, Any]:
    """What this process runs with, for ``results.json`` (``runtime``) and benchmarks."""
    import torch

    return {
        "available_cpus": available_cpus(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        **{name: environ.get(name) for name in ("OMP_NUM_THREADS", *WAIT_POLICY_VARIABLES)},
    }


def set_up_process(log: logging.Logger) -> None:
    """What every command does first inside its Hydra run: route the libraries' logs into the
    run's log file and give torch one thread per available CPU (logged)."""
    route_library_logs()
    threads = configure_threads()
    log.info(
        f"torch: {threads} intra-op threads ({available_cpus()} CPUs available), "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )


# ------------------------------------------------------------------- logging
def route_library_logs() -> None:
    """Let Lightning's loggers and Python warnings go through the root logger's handlers.

    Lightning, imported before Hydra configures logging, attaches a stderr handler
    to its loggers and stops their propagation, so nothing of it reached the run's
    log file. Does nothing while the root logger has no handler (no Hydra run).
    """
    if not logging.getLogger().handlers:
        return
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    logging.captureWarnings(True)


# --------------------------------------------------------------------- noise
#: (message regex, module regex) of warnings that say nothing to a user of this project
NOISE_WARNINGS = (
    # torch deprecated LeafSpec; Lightning's own pytree helpers still build one (lightning 2.6)
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        r"lightning\.pytorch\.utilities\._pytree",
    ),
    # mixed precision keeps float32 weights, which is the size the summary then reports
    (
        r"Precision \S+-mixed is not supported by the model summary",
        r"lightning\.pytorch\.utilities\.model_summary",
    ),
    # every logged value is logged per epoch too, so short epochs lose nothing
    (r"The number of training batches \(\d+\) is smaller than the logging interval", r"lightning"),
)
#: the CSV logger shares the run directory with Hydra's files; only true if metrics.csv exists
CSV_DIRECTORY_WARNING = (
    r"Experiment logs directory .* exists and is not empty",
    r"lightning\.fabric\.loggers\.csv_logs",
)
#: a resumed run's checkpoint directory holds its checkpoints; only news on a fresh start
CHECKPOINT_DIRECTORY_WARNING = (
    r"Checkpoint directory .* exists and is not empty",
    r"lightning\.pytorch\.callbacks\.model_checkpoint",
)
NOISE_LOG_PREFIXES = (
    # Lightning's advertisements for its cloud products, logged at INFO on every run
    "💡 Tip: For seamless cloud",
    # the answer to configs/callbacks' model_summary (spml_rs.model_summary), on every run
    "Trainer already configured with model summary callbacks",
)
NOISE_LOG_SOURCES = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class DropMessages(logging.Filter):
    """Drop log records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def silence_known_noise(*, csv_log_exists: bool, resuming: bool) -> None:
    """Filter the warnings of :data:`NOISE_WARNINGS` and the log lines of :data:`NOISE_LOG_PREFIXES`.

    Args:
        csv_log_exists: the run directory holds a ``metrics.csv`` that Lightning's
            CSV logger will delete; then its warning about the directory is kept.
        resuming: the run continues from a checkpoint, so its checkpoint directory
            is expected to hold files (the warning is kept for a fresh start).
    """
    noise = [
        *NOISE_WARNINGS,
        *([] if csv_log_exists else [CSV_DIRECTORY_WARNING]),
        *([CHECKPOINT_DIRECTORY_WARNING] if resuming else []),
    ]
    for message, module in noise:
        warnings.filterwarnings("ignore", message=message, module=module)
    for name in NOISE_LOG_SOURCES:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(NOISE_LOG_PREFIXES))


# ------------------------------------------------------------------- signals
def on_slurm() -> bool:
    """A SLURM batch job (not an interactive allocation), as Lightning detects it."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


@contextmanager
def exit_on_sigterm(run_dir: Path) -> Iterator[None]:
    """Exit with code 143 when Lightning stops the wrapped fit/test because of SIGTERM.

    Lightning's signal connector stops a run at the next batch boundary after a
    SIGTERM by raising ``SIGTERMException``, a ``SystemExit`` without a code: the
    process then exits 0, as if the run had succeeded. The last checkpoint is
    safe by then (the handler only sets a flag; checkpoints are written
    atomically). On SLURM, SIGTERM means preemption and the requeue belongs to
    Lightning's and submitit's handlers, so the exception is left alone.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except SIGTERMException:
        if on_slurm():
            raise
        log.error(
            f"stopped by SIGTERM: {run_dir} has no results.json; checkpoints/last.ckpt holds the "
            f"last finished epoch (resume: the same command with hydra.run.dir={run_dir})"
        )
        raise SystemExit(SIGTERM_EXIT_CODE) from None


# ------------------------------------------------------------------ launcher
def check_launcher_nodes(config: DictConfig) -> None:
    """``hydra.launcher.nodes`` must equal ``trainer.num_nodes``; ``config`` includes ``hydra``.

    ``hydra/launcher=slurm`` reads its node count from ``trainer.num_nodes``, so
    the two agree unless ``hydra.launcher.nodes`` was overridden by hand: then
    SLURM would allocate one number of nodes and Lightning wire up another.
    """
    nodes = OmegaConf.select(config, "hydra.launcher.nodes", default=None)
    num_nodes = OmegaConf.select(config, "trainer.num_nodes", default=1)
    if nodes is not None and nodes != num_nodes:
        raise ValueError(
            f"hydra.launcher.nodes={nodes} but trainer.num_nodes={num_nodes}: give "
            f"trainer.num_nodes={nodes} instead (the launcher takes its node count from it)"
        )


class LauncherNodesCheck(HydraCallback):
    """Hydra callback: :func:`check_launcher_nodes` before a sweep launches its jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_launcher_nodes(config)
