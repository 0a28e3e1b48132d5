"""The request-body limit, as ASGI middleware: a body past ``Settings.max_body_bytes`` is refused
with 413 before it is read, so its size costs the controller nothing (a 50 MB body used to be read
whole, then parsed, for 40 s).

A declared ``Content-Length`` over the limit is answered at once, unread. A body without one
(chunked) is counted as it streams, and the first chunk past the limit ends the request.
"""

from __future__ import annotations

import json

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_FIELD = "<body>"


class BodyTooLarge(HTTPException):
    """Raised by the counting ``receive`` in the API's error shape: FastAPI passes an
    ``HTTPException`` through where it reads bodies itself, and the app's handler answers it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=_detail(limit))


def _detail(limit: int) -> list[dict[str, str]]:
    return [{"field": BODY_FIELD, "reason": f"the request body is over the limit of {limit} "
             "bytes (ABLATE_MAX_BODY_BYTES)"}]


class BodyLimit:
    """Refuse request bodies over ``max_bytes``: 413, ``{"detail": [{"field": "<body>", ...}]}``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:  # read outside the routes' handlers: answer it here
            if started:
                raise
            await _send_413(send, self.max_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed one before we see it
    return None


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": _detail(limit)}, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})
