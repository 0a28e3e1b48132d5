"""The error responses routes declare, so the schema lists every status a route can answer.

Each is the API's one error shape (``ErrorBody``). 413 and 500 can answer any request and are
declared once, on the app; 401 (``UNAUTHORIZED``) on the routers behind ``deps.check_auth``.
"""

from __future__ import annotations

from typing import Any

from service.api.models import ErrorBody

_WHY = {
    401: "No valid 'Authorization: Bearer <token>' (only when the controller has a token); "
         "the WWW-Authenticate header names the scheme",
    404: "No experiment with this id",
    409: "The request conflicts with the experiment's state",
    413: "The request body is over ABLATE_MAX_BODY_BYTES (nothing read)",
    422: "A parameter is invalid; each entry names the field",
    500: "An unforeseen error, logged by the controller (no trace in the body)",
    503: "Ray is unreachable (the reconciler retries)",
}

Responses = dict[int | str, dict[str, Any]]


def errors(*codes: int, **why: str) -> Responses:
    """``responses=`` for these status codes; ``why`` (``e409="..."``) overrides a description."""
    return {code: {"model": ErrorBody, "description": why.get(f"e{code}", _WHY[code])}
            for code in codes}


ALWAYS = errors(413, 500)
"""What any request can be answered with: the body limit and the unforeseen error."""

UNAUTHORIZED: Responses = {401: {
    **errors(401)[401],
    "headers": {"WWW-Authenticate": {
        "description": 'Bearer realm="vlp-ablate", with error="invalid_token" when a token was '
        "sent", "schema": {"type": "string"}}},
}}
"""What ``deps.check_auth`` answers without a valid token (RFC 6750)."""
