"""The Flask app: one page, its script and style, the images and a small JSON API.

Routes (all answers are built from the session's id table, never from a path):

* ``GET /``                      the page
* ``GET /static/<name>``         ``app.js`` / ``app.css`` from a fixed list
* ``GET /image/<image_id>``      the picture of a session image (404 otherwise)
* ``GET /api/resume``            the first image still to annotate
* ``GET /api/item?pos=&batch=``  image ``pos`` of the session, candidate batch ``batch``
* ``POST /api/label``            ``{"image_id", "class_name", "batch"}`` -> next image
* ``POST /api/skip``             ``{"image_id"}`` -> next image
* ``POST /api/undo``             ``{}`` -> the image whose action was taken back

POSTs must carry ``Content-Type: application/json`` (a cross-site form cannot),
and the ``Host`` header must name this machine (no DNS rebinding), so another web
site open in the same browser cannot label or read anything. Bodies over
:data:`MAX_REQUEST_BYTES` answer 413 before they are read; every JSON field and
query parameter must have its type (``"batch": true`` is not batch 1) and no
other field is accepted (400). Errors are JSON ``{"error": message}``; an image
the source cannot read (a corrupt reBEN LMDB value) answers 500 with the
source's message, which the page shows in place of the picture.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException

from annotator.session import AnnotationSession, InvalidRequest
from annotator.sources import UnknownImage
from annotator.store import HandEditsError
from spml_rs.data.benv2_lmdb import CorruptValueError

log = logging.getLogger(__name__)

#: The largest legal body is a label: an id, a class name and a batch number, under
#: 1 KiB even with every character \u-escaped. 64 KiB leaves ample room; anything
#: larger is refused (413) before it is read, so a client cannot make the server
#: buffer hundreds of megabytes.
MAX_REQUEST_BYTES = 64 * 1024
#: the JSON object each POST takes: field -> type
LABEL_FIELDS: dict[str, type] = {"image_id": str, "class_name": str, "batch": int}
SKIP_FIELDS: dict[str, type] = {"image_id": str}
UNDO_FIELDS: dict[str, type] = {}
TYPE_NAMES = {str: "a string", int: "an integer"}
INTEGER = re.compile(r"-?[0-9]{1,9}")

STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]"}
#: binding to every interface is an explicit choice to be reached under any name
ANY_HOST = {"0.0.0.0", "::"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(session: AnnotationSession, bind_host: str = "127.0.0.1") -> Flask:
    """The web app of ``session``; ``bind_host`` is also accepted in the ``Host`` header."""
    app = Flask(__name__, static_folder=None)
    # Werkzeug stops reading any body (chunked too) at MAX_CONTENT_LENGTH, but hands over
    # a body cut at exactly that length without an error: one byte more tells them apart.
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES + 1
    allowed_hosts = LOCAL_HOSTS | {bind_host}
    assets = {name: _asset(name) for name in (*STATIC, "index.html")}

    @app.before_request
    def check_request() -> None:
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        if host not in allowed_hosts and bind_host not in ANY_HOST:
            abort(400, f"unexpected Host header {request.host!r}")
        if request.method == "POST" and not request.is_json:
            abort(415, "POST bodies must be application/json")
        if (request.content_length or 0) > MAX_REQUEST_BYTES:
            abort(413, f"request body of {request.content_length} bytes refused: "
                  f"the limit is {MAX_REQUEST_BYTES} bytes")  # fmt: skip

    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if response.mimetype == "application/json":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/")
    def page() -> Response:
        return Response(assets["index.html"], mimetype="text/html")

    @app.get("/static/<name>")
    def static_file(name: str) -> Response:
        if name not in STATIC:
            abort(404)
        return Response(assets[name], mimetype=STATIC[name])

    @app.get("/image/<image_id>")
    def image(image_id: str) -> Response:
        if image_id not in session.position:
            abort(404)
        try:
            picture = session.source.image(image_id)
        except UnknownImage:
            abort(404)
        except (CorruptValueError, OSError) as error:
            # The page shows this text in place of the picture: say which image and why.
            log.warning("image %r cannot be read: %s", image_id, error)
            message = f"image {image_id!r} cannot be read: {error}"
            return jsonify({"error": message, "image_id": image_id}), 500  # type: ignore[return-value]
        response = Response(picture.data, mimetype=picture.mimetype)
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @app.get("/api/resume")
    def resume() -> Response:
        return jsonify(session.resume())

    @app.get("/api/item")
    def item() -> Response:
        query = query_integers(("pos", "batch"))
        if "pos" not in query:
            raise InvalidRequest(f"{request.path}: query parameter 'pos' (an integer) is missing")
        return jsonify(session.item(query["pos"], query.get("batch")))

    @app.post("/api/label")
    def label() -> Response:
        body = json_fields(LABEL_FIELDS)
        return jsonify(session.label(body["image_id"], body["class_name"], body["batch"]))

    @app.post("/api/skip")
    def skip() -> Response:
        return jsonify(session.skip(json_fields(SKIP_FIELDS)["image_id"]))

    @app.post("/api/undo")
    def undo() -> Response:
        json_fields(UNDO_FIELDS)
        result = session.undo()
        if result is None:
            return jsonify({"error": "nothing to undo"}), 409  # type: ignore[return-value]
        return jsonify(result)

    @app.errorhandler(InvalidRequest)
    def invalid(error: InvalidRequest) -> tuple[Response, int]:
        return jsonify({"error": str(error)}), 400

    @app.errorhandler(HandEditsError)
    def edited(error: HandEditsError) -> tuple[Response, int]:
        return jsonify({"error": str(error)}), 409

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": error.description or error.name}), error.code or 500

    return app


def json_fields(fields: Mapping[str, type]) -> dict[str, Any]:
    """The request's JSON object, with exactly ``fields``, each of its type (else 400)."""
    expected = "{" + ", ".join(f"{n!r}: {TYPE_NAMES[k]}" for n, k in fields.items()) + "}"
    if len(request.get_data(cache=True)) > MAX_REQUEST_BYTES:  # a chunked body, cut
        abort(413, f"request body refused: the limit is {MAX_REQUEST_BYTES} bytes")
    body = request.get_json()  # invalid JSON: 400 from Flask
    if not isinstance(body, dict):
        raise InvalidRequest(
            f"{request.path}: the body must be a JSON object {expected}, got {json_type(body)}"
        )
    unexpected = sorted(set(body) - set(fields))
    if unexpected:
        raise InvalidRequest(
            f"{request.path}: unexpected field(s) {unexpected}; expected {expected}"
        )
    for name, kind in fields.items():
        if name not in body:
            raise InvalidRequest(f"{request.path}: missing field {name!r} ({TYPE_NAMES[kind]})")
        value = body[name]
        # bool is a subclass of int in Python, but JSON true is not a batch number
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InvalidRequest(
                f"{request.path}: field {name!r} must be {TYPE_NAMES[kind]}, "
                f"got {json_type(value)} {_shorten(value)}"
            )
    return body


def query_integers(names: Sequence[str]) -> dict[str, int]:
    """The integer query parameters given, each at most once; no other parameter (else 400)."""
    unexpected = sorted(set(request.args) - set(names))
    if unexpected:
        raise InvalidRequest(
            f"{request.path}: unexpected query parameter(s) {unexpected}; expected {list(names)}"
        )
    values = {}
    for name in names:
        given = request.args.getlist(name)
        if len(given) > 1:
            raise InvalidRequest(f"{request.path}: query parameter {name!r} is given {given}, "
                                 "expected one integer")  # fmt: skip
        if given and not INTEGER.fullmatch(given[0]):
            raise InvalidRequest(
                f"{request.path}: query parameter {name!r} must be an integer, got {given[0]!r}"
            )
        if given:
            values[name] = int(given[0])
    return values


def json_type(value: object) -> str:
    """The JSON name of ``value``'s type, for error messages."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "an object", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def _shorten(value: object, limit: int = 60) -> str:
    """``value`` as JSON (as the client wrote it), cut to ``limit`` characters."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _asset(name: str) -> bytes:
    return files("annotator").joinpath("static", name).read_bytes()
