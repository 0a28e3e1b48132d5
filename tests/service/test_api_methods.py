"""OPTIONS and 405 on every route: ``Allow`` lists every method of the path (Starlette's listed the
first matching route's only: ``POST`` for /experiments), without a token; unknown paths stay 404.

The real app in-process (``api_client``), with a token set.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.service.api_client import make_client

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTES = {  # path -> the methods it answers
    "/healthz": "GET, OPTIONS",
    "/experiments": "GET, POST, OPTIONS",
    "/experiments/x": "GET, OPTIONS",
    "/experiments/x/cancel": "POST, OPTIONS",
    "/experiments/x/retry": "POST, OPTIONS",
    "/experiments/x/compare": "GET, OPTIONS",
    "/experiments/x/report": "GET, OPTIONS",
    "/experiments/x/evaluate": "POST, OPTIONS",
    "/docs": "GET, HEAD, OPTIONS",
    "/openapi.json": "GET, HEAD, OPTIONS",
}


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    with make_client(tmp_path, auth_token=TOKEN) as c:
        yield c


@pytest.mark.parametrize("path", list(ROUTES))
def test_options_lists_the_paths_methods_without_a_token(client, path):
    r = client.options(path)
    assert r.status_code == 204, r.text
    assert r.headers["allow"] == ROUTES[path] and r.content == b""


@pytest.mark.parametrize("path", ["/nope", "/experiments/x/y/z", "/healthz/x"])
def test_options_on_an_unknown_path_is_404(client, path):
    r = client.options(path)
    assert r.status_code == 404 and "allow" not in r.headers
    assert r.json() == {"detail": [{"field": "<request>", "reason": "Not Found"}]}


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/experiments"), ("PUT", "/healthz"),
                                              ("GET", "/experiments/x/cancel"),
                                              ("PATCH", "/experiments/x")])
def test_a_method_the_path_lacks_is_405_listing_all_it_has(client, method, path):
    r = client.request(method, path, headers=AUTH)
    assert r.status_code == 405
    assert r.headers["allow"] == ROUTES[path]  # Starlette's said only the first route's: POST
    assert r.json()["detail"][0]["field"] == "<request>"


def test_the_allowed_methods_are_the_documented_ones(client):
    schema = client.get("/openapi.json").json()
    for path, item in schema["paths"].items():
        concrete = path.replace("{exp_id}", "x")
        documented = {m.upper() for m in item}
        assert set(ROUTES[concrete].split(", ")) - {"OPTIONS", "HEAD"} == documented, path
