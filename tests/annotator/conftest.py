"""Fixtures of the annotator tests: fake AID images, a reBEN copy and a real server process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.request import urlopen

import lmdb
import numpy as np
import pytest
from PIL import Image

#: the committed tiny reBEN (official layout, LMDB and metadata)
BENV2_FIXTURE = Path(__file__).resolve().parents[1] / "data" / "benv2"
#: a few AID scene folders with their image counts (real AID has 30 folders of ~80)
AID_SCENES = {"Airport": 3, "BareLand": 2, "Beach": 3}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def write_fake_aid(root: Path, scenes: dict[str, int] = AID_SCENES, size: int = 96) -> list[str]:
    """AID layout ``images_tr/<Scene>/<scene>_<n>.jpg`` with small random JPEGs; returns ids."""
    rng = np.random.default_rng(0)
    ids = []
    for scene, count in scenes.items():
        folder = root / "images_tr" / scene
        folder.mkdir(parents=True)
        for n in range(1, count + 1):
            pixels = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            picture = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR)
            picture.save(folder / f"{scene.lower()}_{n}.jpg", quality=85)
            ids.append(f"{scene.lower()}_{n}")
    return ids


@pytest.fixture
def aid_root(tmp_path: Path) -> Path:
    root = tmp_path / "AID"
    write_fake_aid(root)
    return root


class ServerProcess:
    """``python -m annotator ...`` in a subprocess, started in another directory."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "annotator", "--port", "0", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        lines = []
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            lines.append(line)
            if "open http://" in line:
                return line.split("open ", 1)[1].strip().rstrip("/")
        self.kill()
        raise RuntimeError("annotator did not start:\n" + "".join(lines))

    def kill(self) -> None:
        """SIGKILL: no clean-up handler runs, as in a crash."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[object]:
    """``start_server(*cli_args) -> ServerProcess``; every server is killed at the end."""
    servers: list[ServerProcess] = []
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()

    def _start(*args: str) -> ServerProcess:
        servers.append(ServerProcess(list(args), workdir))
        return servers[-1]

    yield _start
    for server in servers:
        server.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's chromium driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.is_file() and not os.environ.get("CI"):  # CI installs it: never skip there
        pytest.skip(
            "needs Debian chromium at /usr/bin/chromium: apt-get install -y chromium chromium-driver"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


@pytest.fixture
def corrupt_benv2_server(
    tmp_path: Path, start_server: Callable[..., ServerProcess]
) -> tuple[ServerProcess, str, Path]:
    """A server on a copy of the reBEN fixture whose first train patch has a torn LMDB value.

    Returns the server, that patch id and the label file. The value is cut after
    the server listed its images and before any image was read (the source opens
    the LMDB on the first read), as a disk error or an interrupted copy would.
    """
    root = tmp_path / "benv2"
    root.mkdir()
    for name in ("metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet"):
        shutil.copy(BENV2_FIXTURE / name, root / name)
    shutil.copytree(BENV2_FIXTURE / "BigEarthNet-V2-LMDB", root / "BigEarthNet-V2-LMDB")
    out = tmp_path / "benv2_manual.csv"
    server = start_server("--dataset", "benv2", "--root", str(root), "--out", str(out),
                          "--order", "dataset")  # fmt: skip
    with urlopen(server.url + "/api/resume") as response:
        first = json.load(response)["image_id"]
    env = lmdb.open(str(root / "BigEarthNet-V2-LMDB"), map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(first.encode(), txn.get(first.encode())[:100])
    env.close()
    return server, first, out
