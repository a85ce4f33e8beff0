"""Atomic writes: all-or-nothing content, durable names, no temporary files left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from spml_rs import fileio


def test_replaces_content_and_creates_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "labels.csv"
    fileio.atomic_write_text(target, "first\n")
    fileio.atomic_write_bytes(target, b"second\n")
    assert target.read_bytes() == b"second\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["labels.csv"]


def test_fsyncs_the_file_and_then_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("dir" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", recording_fsync)
    fileio.atomic_write_bytes(tmp_path / "results.json", b"{}")
    assert synced == ["file", "dir"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "manual.csv"
    target.write_text("hand-made\n")

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write_text(target, "new\n")
    assert target.read_text() == "hand-made\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manual.csv"]
