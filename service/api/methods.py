"""``Allow``: the methods a path really answers, for OPTIONS and for 405.

Starlette builds a 405's ``Allow`` from the first route whose path matched, so ``/experiments``
(a POST route, then a GET route) advertised only ``POST``, and it answers OPTIONS with that 405.
Here every route matching the path counts, and OPTIONS is a 204 carrying the list. It is answered
from the routing table before any dependency runs, so it needs no token; an unknown path stays a
404 (nothing matches it).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> str:
    """``GET, POST, OPTIONS``-style: each method some route fully matches for this path (routes
    asked through ``matches``, the one routing interface every kind of route has)."""
    routes = request.app.router.routes
    allowed = [method for method in _ORDER if method == "OPTIONS" or any(
        route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)]
    return ", ".join(allowed)


def options_response(request: Request) -> Response:
    """OPTIONS on a known path: no body, the path's methods in ``Allow`` (RFC 9110 9.3.7)."""
    return Response(status_code=204, headers={"Allow": allowed_methods(request)})
