"""What the OpenAPI schema says beyond FastAPI's defaults: the bearer scheme where the token is
checked, exactly the statuses each route can answer (every error an ``ErrorBody``), and links
from the 201 of POST /experiments.

The real app in-process (``api_client``), with a token set unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.service.api_client import make_client

TOKEN = "s3cret"


@pytest.fixture
def client(tmp_path) -> Iterator[TestClient]:
    with make_client(tmp_path, auth_token=TOKEN) as c:
        yield c


def schema_of(client: TestClient) -> dict:
    r = client.get("/openapi.json")  # open, even with a token set
    assert r.status_code == 200
    return r.json()


# ---- security ---------------------------------------------------------------------------------

def test_the_bearer_scheme_is_declared_on_the_routes_that_check_it(client):
    schema = schema_of(client)
    schemes = schema["components"]["securitySchemes"]
    assert list(schemes) == ["bearerAuth"]
    assert (schemes["bearerAuth"]["type"], schemes["bearerAuth"]["scheme"]) == ("http", "bearer")
    for path, item in schema["paths"].items():
        for method, op in item.items():
            if path == "/healthz":
                assert "security" not in op and "401" not in op["responses"]
                continue
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            unauthorized = op["responses"]["401"]
            assert "WWW-Authenticate" in unauthorized["headers"]
            assert unauthorized["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ErrorBody")


def test_without_a_token_the_schema_says_the_scheme_is_optional(tmp_path):
    with make_client(tmp_path) as client:
        schema = schema_of(client)
    op = schema["paths"]["/experiments"]["get"]
    assert op["security"] == [{}, {"bearerAuth": []}]


def test_the_docs_and_the_schema_stay_open_with_a_token(client):
    assert client.get("/docs").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/healthz").status_code == 200
    r = client.get("/experiments")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


# ---- every status a route answers ---------------------------------------------------------

DOCUMENTED = {
    ("get", "/healthz"): {"200", "413", "500"},
    ("post", "/experiments"): {"200", "201", "401", "409", "413", "422", "500"},
    ("get", "/experiments"): {"200", "401", "413", "500"},
    ("get", "/experiments/{exp_id}"): {"200", "401", "404", "413", "500"},
    ("post", "/experiments/{exp_id}/cancel"): {"200", "401", "404", "413", "500"},
    ("post", "/experiments/{exp_id}/retry"): {"200", "401", "404", "409", "413", "500", "503"},
    ("get", "/experiments/{exp_id}/compare"): {"200", "401", "404", "413", "422", "500"},
    ("get", "/experiments/{exp_id}/report"): {"200", "401", "404", "413", "422", "500"},
    ("post", "/experiments/{exp_id}/evaluate"): {"200", "202", "401", "404", "409", "413",
                                                 "422", "500"},
}


def test_each_route_documents_exactly_the_statuses_it_can_answer(client):
    schema = schema_of(client)
    found = {(m, p): set(op["responses"]) for p, item in schema["paths"].items()
             for m, op in item.items()}
    assert found == DOCUMENTED
    for (method, path), codes in found.items():
        for code in codes - {"200", "201", "202"}:
            content = schema["paths"][path][method]["responses"][code]["content"]
            assert content["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"}, (method, path, code)
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_the_201_links_to_every_route_of_the_experiment(client):
    schema = schema_of(client)
    links = schema["paths"]["/experiments"]["post"]["responses"]["201"]["links"]
    targets = {op["operationId"] for p, item in schema["paths"].items()
               if p.startswith("/experiments/{exp_id}") for op in item.values()}
    assert set(links) == targets and len(targets) == 6
    assert {link["parameters"]["exp_id"] for link in links.values()} == {"$response.body#/id"}
