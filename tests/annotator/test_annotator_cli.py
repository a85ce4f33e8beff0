"""The command line: clear errors before any server starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import Request, urlopen


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "annotator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_works_from_any_directory(tmp_path: Path) -> None:
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "--dataset {aid,benv2,synthetic}" in result.stdout


def test_bad_inputs_are_refused_with_a_clear_message(aid_root: Path, tmp_path: Path) -> None:
    result = run_cli(
        "--dataset", "aid", "--root", str(tmp_path / "nowhere"), "--out", "x.csv", cwd=tmp_path
    )
    assert result.returncode == 2 and "no AID images under" in result.stderr

    foreign = tmp_path / "labels.csv"
    foreign.write_text("image_id,class_name\nairport_1,sea\n")
    result = run_cli(
        "--dataset", "aid", "--root", str(aid_root), "--out", str(foreign), cwd=tmp_path
    )
    assert result.returncode == 2 and "refusing to overwrite" in result.stderr
    assert foreign.read_text() == "image_id,class_name\nairport_1,sea\n"

    result = run_cli(
        "--dataset", "aid", "--root", str(aid_root), "--out", "l.csv", "--limit", "0", cwd=tmp_path
    )
    assert result.returncode == 2 and "limit must be positive" in result.stderr


def test_hand_edits_refuse_the_start_and_both_flags_resolve_them(
    aid_root: Path, tmp_path: Path, start_server
) -> None:
    from annotator.store import AnnotationStore

    out = tmp_path / "labels.csv"
    store = AnnotationStore(out, "alice")
    store.record("airport_1", "label", "airplane")
    store.close()
    edited = out.read_text().replace(",airplane,", ",sea,")
    out.write_text(edited)
    args = ["--dataset", "aid", "--root", str(aid_root), "--out", str(out), "--annotator", "bob"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert f"{out} was edited by hand" in result.stderr
    assert "airport_1 (file: 'sea', log: 'airplane')" in result.stderr
    assert "--adopt-edits" in result.stderr and "--rebuild-from-log" in result.stderr
    assert out.read_text() == edited
    result = run_cli(*args, "--adopt-edits", "--rebuild-from-log", cwd=tmp_path)
    assert result.returncode == 2 and "not allowed with argument" in result.stderr

    start_server(*args, "--adopt-edits").kill()
    assert out.read_text().splitlines()[1].startswith("airport_1,sea,bob,")
    out.write_text(edited)  # edited again (bob's adopted row is replaced by the old one)
    start_server(*args, "--rebuild-from-log").kill()
    assert out.read_text().splitlines()[1].startswith("airport_1,sea,bob,")  # from the log
    assert [p.read_text() for p in tmp_path.glob("labels.edited-*.csv")] == [edited]


def test_an_edit_while_serving_answers_409_and_writes_nothing(
    aid_root: Path, tmp_path: Path, start_server
) -> None:
    out = tmp_path / "labels.csv"
    server = start_server("--dataset", "aid", "--root", str(aid_root), "--out", str(out))
    with urlopen(server.url + "/api/resume") as response:
        image_id = json.load(response)["image_id"]
    assert post(server.url + "/api/skip", {"image_id": image_id})[0] == 200
    out.write_text("image_id,class_name,annotator,timestamp\nairport_2,sea,me,now\n")
    status, body = post(server.url + "/api/skip", {"image_id": "airport_2"})
    assert status == 409
    assert "not recorded" in body["error"] and f"{out} was edited by hand" in body["error"]
    assert out.read_text().endswith("airport_2,sea,me,now\n")
    assert len(out.with_name("labels.csv.events.csv").read_text().splitlines()) == 2


def post(url: str, body: object) -> tuple[int, dict]:
    """POST ``body`` as JSON; the status and the JSON answer (also for 4xx)."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    try:
        with urlopen(Request(url, data, headers)) as response:
            return response.status, json.load(response)
    except HTTPError as error:
        return error.code, json.load(error)
