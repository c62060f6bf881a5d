"""The gateway's JSON answers: :func:`json_response` (an orjson body) and :func:`error_body`, the error document
``{"error": {"code", "message"}}`` every answer that is not a 200 carries.

Apart from :mod:`gatewayd.app` because both its cross-cutting wrapper and the read routes
(:mod:`gatewayd.read_routes`) answer with them.
"""

from __future__ import annotations

from typing import Any

import orjson
from sanic.response import HTTPResponse

JSON = "application/json"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    """orjson-encoded JSON response (bytes are sent as they are)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return HTTPResponse(raw, status=status, headers=headers, content_type=JSON)


def error_body(code: str, message: str, param: str | None = None, details: dict[str, Any] | None = None) -> bytes:
    """The error document: ``{"error": {"code", "message"[, "parameter"][, details...]}}`` (a shard's 503 adds
    ``shard`` and ``chains``)."""
    err: dict[str, Any] = {"code": code, "message": message}
    if param is not None:
        err["parameter"] = param
    if details:
        err.update(details)
    return orjson.dumps({"error": err})
