"""The OpenAPI schema: FastAPI's, plus what it cannot derive from the routes.

- ``AblationSpec``: POST /experiments reads its body raw (JSON or YAML), so the spec's schema is
  added by hand, with the rules its validators enforce (``service.specs.schema``).
- Security: FastAPI declares the bearer scheme (``deps.BEARER``) on every route behind
  ``deps.check_auth``, required; without a token the controller enforces nothing, and the schema
  says so (an empty alternative). /healthz, /docs and /openapi.json stay open.
- Errors: every error is ``ErrorBody``, and only the statuses a route can answer are listed
  (FastAPI's own 422, in another shape and on routes that cannot answer it, is dropped).
- Links from the 201 of POST /experiments to the routes that take its ``id``, so clients and
  schema-driven tests can follow them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.settings import Settings
from service.specs import AblationSpec


def build_schema(app: FastAPI, settings: Settings) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    components = schema.setdefault("components", {})
    _add_spec(components.setdefault("schemas", {}))
    _errors_in_api_shape(schema)
    _optional_without_token(schema, settings)
    _add_links(schema)
    return schema


def _add_spec(schemas: dict[str, Any]) -> None:
    spec = AblationSpec.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(spec.pop("$defs", {}))
    schemas["AblationSpec"] = spec


def _errors_in_api_shape(schema: dict[str, Any]) -> None:
    """FastAPI adds a 422 in its own shape (``HTTPValidationError``) to every route with a
    parameter, even a path string nothing can refuse. The routes that can answer 422 declare it
    themselves (``responses.errors``), as ``ErrorBody``; FastAPI's is dropped (the contract test
    finds a 422 a route answers without declaring it)."""
    schemas = schema["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for op in _operations(schema):
        if "HTTPValidationError" in str(op["responses"].get("422", "")):
            del op["responses"]["422"]


def _optional_without_token(schema: dict[str, Any], settings: Settings) -> None:
    """Without ``ABLATE_AUTH_TOKEN`` nothing is enforced: the routes that declare the bearer
    scheme (``deps.BEARER``) take requests without it too, and the schema says so."""
    if settings.auth_token is not None:
        return
    for op in _operations(schema):
        if op.get("security") and {} not in op["security"]:
            op["security"] = [{}, *op["security"]]


def _add_links(schema: dict[str, Any]) -> None:
    created = schema["paths"]["/experiments"]["post"]["responses"]["201"]
    links = created.setdefault("links", {})
    for path, item in schema["paths"].items():
        if not path.startswith("/experiments/{exp_id}"):
            continue
        for op in item.values():
            links[op["operationId"]] = {
                "operationId": op["operationId"], "parameters": {"exp_id": "$response.body#/id"},
                "description": "the experiment just created",
            }


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in schema["paths"].values() for op in item.values()
            if isinstance(op, dict) and "responses" in op]
