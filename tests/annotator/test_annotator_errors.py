"""Data errors reach the user as messages that name the image, never as a bare HTTP 500."""

from __future__ import annotations

import json
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest


def test_a_corrupt_reben_value_answers_its_message_and_key(corrupt_benv2_server) -> None:
    server, first, out = corrupt_benv2_server
    with pytest.raises(HTTPError) as caught:
        urlopen(server.url + "/image/" + first)
    assert caught.value.code == 500
    assert caught.value.headers["Content-Type"] == "application/json"
    body = json.load(caught.value)
    assert body["image_id"] == first
    assert f"image {first!r} cannot be read: LMDB " in body["error"]
    assert (
        f"the value of key {first!r} (100 bytes) is not a valid safetensors dict" in body["error"]
    )
    with urlopen(server.url + "/api/resume") as response:  # the session goes on
        assert json.load(response)["image_id"] == first
    assert not out.exists()
