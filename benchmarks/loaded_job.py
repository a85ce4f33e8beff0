"""The default job alone and under a controlled competing load: wall times and slowdown.

    python benchmarks/loaded_job.py [--jobs 2] [--repeats 1] [--variant NAME=VAR=VALUE,...]
        [--out DIR] [override ...]

For each variant of the process environment, run ``python -m spml_rs.train`` once
alone, then ``--jobs`` copies at the same time (the competing load is a second
default job), and print each wall time, the CPU time (user + system) of every
process, and the slowdown: mean wall time of the concurrent jobs / the alone
time. ``--jobs`` jobs that each could use every core of a machine share it, so a
proportional slowdown is about ``--jobs``; a larger one means waste (threads
spinning, fighting for cores). Variants alternate (a, b, a, b, ...) when
repeated, so a shared machine's load affects both alike.

The default variants compare the wait policy of OpenMP's idle threads:
``libgomp-default`` sets ``GOMP_SPINCOUNT=300000``, the value libgomp uses when
``OMP_WAIT_POLICY`` is unset (what every run did before ``spml_rs.runtime``);
``spml_rs`` leaves the environment alone, so the entry point chooses (passive
waiting, torch threads from the CPUs this process may use). A variant's
settings are given as ``NAME=VAR=VALUE,VAR=VALUE``, e.g. ``one-thread=OMP_NUM_THREADS=1``.

Printed along with the figures: ``nproc``, the affinity mask, the load average
before and after, and the thread settings each run reported in its
``results.json`` (``runtime``). The job is the default one (AdaGC, the synthetic
multispectral preset, 4,000 training images) shortened by the overrides printed
at the top (by default 4 epochs instead of 12).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_OVERRIDES = ("trainer.max_epochs=4",)
DEFAULT_VARIANTS = ("libgomp-default=GOMP_SPINCOUNT=300000", "spml_rs=")
THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


@dataclass
class Run:
    """One finished training process."""

    wall_s: float
    cpu_s: float
    returncode: int
    runtime: dict[str, object] | None


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME=VAR=VALUE,VAR=VALUE`` (or ``NAME=`` for no change) -> (name, environment)."""
    name, _, assignments = text.partition("=")
    env = {}
    for item in filter(None, assignments.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: expected VAR=VALUE, got {item!r}")
        env[key] = value
    return name, env


def start(out: Path, overrides: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, float]:
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "spml_rs.train", *overrides, f"hydra.run.dir={out}"]
    log = open(out.parent / f"{out.name}.log", "w")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    return process, time.perf_counter()


def wait(process: subprocess.Popen, started: float, out: Path) -> Run:
    """Wait for ``process``; its wall time, CPU time (``wait4``'s rusage) and runtime block."""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    results = out / "results.json"
    runtime = json.loads(results.read_text()).get("runtime") if results.is_file() else None
    return Run(wall, usage.ru_utime + usage.ru_stime, process.returncode, runtime)


def run_together(outs: list[Path], overrides: list[str], env: dict[str, str]) -> list[Run]:
    started = [start(out, overrides, env) for out in outs]
    runs = [wait(p, t, out) for (p, t), out in zip(started, outs, strict=True)]
    for run, out in zip(runs, outs, strict=True):
        if run.returncode != 0:
            raise SystemExit(f"{out}: exit code {run.returncode}, see {out}.log")
    return runs


def describe_machine() -> str:
    affinity = sorted(os.sched_getaffinity(0))
    settings = ", ".join(f"{k}={os.environ[k]}" for k in THREAD_VARS if k in os.environ)
    return (
        f"nproc (affinity) = {len(affinity)} {affinity}, os.cpu_count() = {os.cpu_count()}, "
        f"thread variables set: {settings or 'none'}"
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="jobs run at once in the loaded phase")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--variant", action="append", help="NAME=VAR=VALUE,... (repeatable)")
    parser.add_argument(
        "--out", type=Path, default=Path("logs/loaded_job") / time.strftime("%F_%H-%M-%S")
    )
    parser.add_argument("overrides", nargs="*", help="replace the default overrides")
    args = parser.parse_args()
    overrides = args.overrides or list(DEFAULT_OVERRIDES)
    variants = [parse_variant(v) for v in args.variant or DEFAULT_VARIANTS]

    print(f"job: python -m spml_rs.train {' '.join(overrides)}  (x{args.jobs} in the loaded phase)")
    print(describe_machine())
    print(f"load average before: {load_average()}")
    results: dict[str, list[tuple[Run, list[Run]]]] = {name: [] for name, _ in variants}
    for repeat in range(args.repeats):
        for name, extra in variants:
            env = {**os.environ, **extra, "PYTHONUNBUFFERED": "1"}
            base = args.out / name / f"r{repeat}"
            (alone,) = run_together([base / "alone"], overrides, env)
            loaded = run_together([base / f"loaded{i}" for i in range(args.jobs)], overrides, env)
            results[name].append((alone, loaded))
            walls = ", ".join(f"{r.wall_s:.1f}" for r in loaded)
            print(
                f"  {name} repeat {repeat}: alone {alone.wall_s:.1f} s, {args.jobs} at once {walls} s"
            )
    print(f"load average after: {load_average()}")
    report(variants, results, args.jobs)


def report(
    variants: list[tuple[str, dict[str, str]]],
    results: dict[str, list[tuple[Run, list[Run]]]],
    jobs: int,
) -> None:
    print(
        f"\n| variant | environment | alone wall s | {jobs} at once wall s | slowdown "
        f"(proportional: {jobs}.0) | alone CPU s | at once CPU s per job | threads (results.json) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, extra in variants:
        pairs = results[name]
        alone = statistics.mean(a.wall_s for a, _ in pairs)
        loaded = statistics.mean(r.wall_s for _, rs in pairs for r in rs)
        cpu_alone = statistics.mean(a.cpu_s for a, _ in pairs)
        cpu_loaded = statistics.mean(r.cpu_s for _, rs in pairs for r in rs)
        runtime = pairs[0][0].runtime or "n/a (no runtime block)"
        env = ", ".join(f"{k}={v}" for k, v in extra.items()) or "(unchanged)"
        print(
            f"| {name} | {env} | {alone:.1f} | {loaded:.1f} | {loaded / alone:.2f} | "
            f"{cpu_alone:.1f} | {cpu_loaded:.1f} | {runtime} |"
        )


if __name__ == "__main__":
    main()
