"""Only session images are served: traversal, absolute and encoded paths are refused."""

from __future__ import annotations

import http.client
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

SECRET = "top secret, outside the dataset root"

TRAVERSALS = [
    "/image/../../etc/passwd",
    "/image/..%2F..%2Fetc%2Fpasswd",
    "/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/image/%252e%252e%252f%252e%252e%252fetc%252fpasswd",  # double-encoded
    "/image/..%252f..%252fsecret.txt",
    "/image/%2Fetc%2Fpasswd",  # absolute
    "/image//etc/passwd",
    "/image/images_tr%2FAirport%2Fairport_1.jpg",  # a real file, but by path
    "/image/airport_1.jpg",
    "/image/..",
    "/image/%00airport_1",
    "/image/..%5c..%5csecret.txt",  # backslash
    "/static/..%2Fapp.py",
    "/static/../app.py",
    "/static/%2e%2e/cli.py",
    "/../../../../etc/passwd",
    "//etc/passwd",
    "/secret.txt",
    "/AID/images_tr/Airport/airport_1.jpg",
]


def request(
    url: str, path: str, method: str = "GET", body: object = None, headers: dict | None = None
) -> tuple[int, bytes]:
    """Send ``path`` exactly as written (no client-side normalisation)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    payload = None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json"} if body is not None else {}
    all_headers.update(headers or {})
    connection.request(method, path, body=payload, headers=all_headers)
    response = connection.getresponse()
    status, data = response.status, response.read()
    connection.close()
    return status, data


@pytest.fixture
def server(aid_root: Path, tmp_path: Path, start_server):
    (tmp_path / "secret.txt").write_text(SECRET)
    # A symlink planted in the dataset that points outside it.
    os.symlink(tmp_path / "secret.txt", aid_root / "images_tr" / "Airport" / "airport_9.jpg")
    out = tmp_path / "labels.csv"
    return start_server(
        "--dataset", "aid", "--root", str(aid_root), "--out", str(out), "--order", "dataset"
    )


def test_traversal_and_encoded_paths_are_refused(server) -> None:
    assert request(server.url, "/image/airport_1")[0] == 200
    for path in TRAVERSALS:
        status, data = request(server.url, path)
        assert status in (400, 404), f"{path} answered {status}"
        assert b"root:" not in data and SECRET.encode() not in data, path


def test_a_symlink_out_of_the_root_is_not_served(server) -> None:
    status, data = request(server.url, "/image/airport_9")
    assert status == 404 and SECRET.encode() not in data


def test_static_files_are_a_fixed_list(server) -> None:
    assert request(server.url, "/static/app.js")[0] == 200
    assert request(server.url, "/static/index.html")[0] == 404


def test_inputs_are_validated(server, tmp_path: Path) -> None:
    item = json.loads(request(server.url, "/api/resume")[1])
    image_id, shown = item["image_id"], item["candidates"]
    hidden = json.loads(request(server.url, "/api/item?pos=0&batch=1")[1])["candidates"][0]
    bad_bodies = [
        {"image_id": image_id, "class_name": "volcano", "batch": 0},  # unknown class
        {"image_id": image_id, "class_name": hidden, "batch": 0},  # not shown in batch 0
        {"image_id": image_id, "class_name": shown[0], "batch": 99},
        {"image_id": image_id, "class_name": shown[0], "batch": "0"},
        {"image_id": "../../etc/passwd", "class_name": shown[0], "batch": 0},
        {"image_id": ["airport_1"], "class_name": shown[0], "batch": 0},
        {"class_name": shown[0], "batch": 0},
    ]
    for body in bad_bodies:
        status, data = request(server.url, "/api/label", "POST", body)
        assert status == 400, body
        assert "error" in json.loads(data)
    assert request(server.url, "/api/skip", "POST", {"image_id": "nope"})[0] == 400
    assert request(server.url, "/api/label", "POST", [1, 2])[0] == 400
    assert request(server.url, "/api/item?pos=abc")[0] == 400
    # not JSON (what a cross-site form would send), and a foreign Host (DNS rebinding)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert request(server.url, "/api/skip", "POST", {"image_id": image_id}, form)[0] == 415
    assert request(server.url, "/", headers={"Host": "evil.example:80"})[0] == 400
    assert request(server.url, "/api/undo", "POST", {})[0] == 409  # nothing to undo yet
    assert not (tmp_path / "labels.csv").exists()  # nothing invalid was written

    status, data = request(
        server.url, "/api/label", "POST", {"image_id": image_id, "class_name": hidden, "batch": 1}
    )
    assert status == 200 and json.loads(data)["progress"]["done"] == 1
    assert (tmp_path / "labels.csv").read_text().splitlines()[1].startswith(f"{image_id},{hidden},")


def _label_body(server) -> tuple[str, list[list[str]]]:
    """The first image and its candidate batches 0 and 1, as the page would see them."""
    item = json.loads(request(server.url, "/api/resume")[1])
    second = json.loads(request(server.url, f"/api/item?pos={item['pos']}&batch=1")[1])
    return item["image_id"], [item["candidates"], second["candidates"]]


def test_json_fields_must_have_their_types(server, tmp_path: Path) -> None:
    """``"batch": true`` is not batch 1; every field is checked against its JSON type."""
    image_id, (_, second) = _label_body(server)
    bad = [  # (body, the field and the expected type the answer must name)
        ({"image_id": image_id, "class_name": second[0], "batch": True}, "'batch'", "integer"),
        ({"image_id": image_id, "class_name": second[0], "batch": 1.0}, "'batch'", "integer"),
        ({"image_id": image_id, "class_name": second[0], "batch": None}, "'batch'", "integer"),
        ({"image_id": image_id, "class_name": [second[0]], "batch": 1}, "'class_name'", "string"),
        ({"image_id": image_id, "class_name": 3, "batch": 1}, "'class_name'", "string"),
        ({"image_id": True, "class_name": second[0], "batch": 1}, "'image_id'", "string"),
        ({"image_id": image_id, "batch": 1}, "'class_name'", "string"),  # missing
        ({"image_id": image_id, "class_name": second[0], "batch": 1, "x": 1}, "'x'", "expected"),
    ]
    for body, field, expected in bad:
        status, data = request(server.url, "/api/label", "POST", body)
        assert status == 400, body
        message = json.loads(data)["error"]
        assert field in message and expected in message, (body, message)
    for body in ({"image_id": False}, {"image_id": 7}, {}):
        status, data = request(server.url, "/api/skip", "POST", body)
        assert status == 400 and "'image_id'" in json.loads(data)["error"], body
    status, data = request(server.url, "/api/undo", "POST", {"everything": True})
    assert status == 400 and "'everything'" in json.loads(data)["error"]
    status, data = request(server.url, "/api/label", "POST", "not an object")
    assert status == 400 and "JSON object" in json.loads(data)["error"]
    for query, field in [("pos=0&batch=true", "'batch'"), ("pos=0&batch=1.0", "'batch'"),
                         ("pos=true", "'pos'"), ("batch=1", "'pos'"), ("pos=0&pos=1", "'pos'"),
                         ("pos=0&limit=3", "'limit'")]:  # fmt: skip
        status, data = request(server.url, f"/api/item?{query}")
        assert status == 400, query
        assert field in json.loads(data)["error"], query
    assert not (tmp_path / "labels.csv").exists()  # nothing was written
    assert request(server.url, "/api/item?pos=-1&batch=1")[0] == 200  # integers still work


def _send_headers(url: str, path: str, headers: dict[str, str]) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.putrequest("POST", path)
    for name, value in {"Content-Type": "application/json", **headers}.items():
        connection.putheader(name, value)
    connection.endheaders()
    return connection


def test_a_huge_body_is_refused_before_it_is_read(server) -> None:
    """300 MB announced, 64 KiB sent: the 413 comes at once, without waiting for the rest."""
    from annotator.app import MAX_REQUEST_BYTES

    announced = 300 * 1024 * 1024
    connection = _send_headers(server.url, "/api/label", {"Content-Length": str(announced)})
    connection.send(b"{" + b" " * (64 * 1024))  # the rest never comes
    response = connection.getresponse()  # would time out if the server waited for the body
    assert response.status == 413
    message = json.loads(response.read())["error"]
    assert str(announced) in message and str(MAX_REQUEST_BYTES) in message
    connection.close()


def test_a_chunked_body_is_cut_at_the_limit(server) -> None:
    """No Content-Length: the server stops reading at the limit and answers 413."""
    from annotator.app import MAX_REQUEST_BYTES

    connection = _send_headers(server.url, "/api/skip", {"Transfer-Encoding": "chunked"})
    chunk = b"{" + b" " * 8191
    for _ in range(MAX_REQUEST_BYTES // len(chunk) + 2):  # more than the limit, never ended
        connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    response = connection.getresponse()
    assert response.status == 413
    assert str(MAX_REQUEST_BYTES) in json.loads(response.read())["error"]
    connection.close()


def test_the_largest_legal_body_fits_the_limit(server) -> None:
    """The limit is far above what the page sends: a fully \\u-escaped, padded body passes."""
    from annotator.app import MAX_REQUEST_BYTES

    image_id, (first, _) = _label_body(server)
    body = {"image_id": image_id, "class_name": first[0], "batch": 0}
    escaped = "".join(f"\\u{ord(c):04x}" for c in first[0])  # what a strict encoder may send
    payload = json.dumps(body).replace(json.dumps(first[0]), f'"{escaped}"')
    payload = payload.replace(",", "," + " " * 2000)  # and generous whitespace
    assert len(payload) < MAX_REQUEST_BYTES // 8
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("POST", "/api/label", payload, {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    assert json.loads(response.read())["progress"]["done"] == 1
    connection.close()


def _peak_rss_mb(pid: int) -> float:
    """Peak resident memory of process ``pid`` (Linux ``VmHWM``), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def test_sending_a_300_mb_body_does_not_grow_the_server(server) -> None:
    """The issue's case: the whole 300 MB arrives (before the fix: ~1.6 GB peak in the server)."""
    before = _peak_rss_mb(server.proc.pid)
    announced = 300 * 1024 * 1024
    connection = _send_headers(server.url, "/api/label", {"Content-Length": str(announced)})
    piece = b" " * (1024 * 1024)
    try:
        for _ in range(announced // len(piece)):
            connection.send(piece)
        status = connection.getresponse().status
    except OSError:  # the server answered 413 and closed while the body was still coming
        status = 413
    connection.close()
    assert status == 413
    assert _peak_rss_mb(server.proc.pid) - before < 64
