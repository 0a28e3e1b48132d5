"""The controller's token: constant-time, any-case ``Bearer``, ``WWW-Authenticate`` on 401, and
no controller beyond loopback without one (or an explicit opt-out). The real app, in-process."""

from __future__ import annotations

import secrets
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from service.api import create_app
from service.settings import ExposedWithoutAuth, Settings
from service.stack.embedded import Stack

TOKEN = "s3cret-" + "x" * 20


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("auth"), auth_token=TOKEN,
                        ray_address="http://127.0.0.1:9", mlflow_tracking_uri="http://127.0.0.1:9")
    return create_app(settings, reconcile=False)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_scheme_is_case_insensitive(client, scheme) -> None:
    r = client.get("/experiments", headers={"authorization": f"{scheme} {TOKEN}"})
    assert r.status_code == 200 and r.json() == []


@pytest.mark.parametrize("header", [
    None, f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer ",
    f"Bearer{TOKEN}", "Bearer é".encode("latin-1"),
])
def test_anything_else_is_401_with_a_bearer_challenge(client, header) -> None:
    headers = {} if header is None else {"authorization": header}
    r = client.get("/experiments", headers=headers)
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="vlp-ablate"')
    assert ('error="invalid_token"' in challenge) == (header is not None)
    assert r.json()["detail"][0]["field"] == "authorization"
    assert TOKEN not in r.text


def test_the_token_is_compared_in_constant_time(client, monkeypatch) -> None:
    calls = []
    real = secrets.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((type(a), type(b)))
        return real(a, b)

    monkeypatch.setattr(secrets, "compare_digest", spy)
    assert client.get("/experiments", headers={"authorization": "Bearer nope"}).status_code == 401
    assert client.get("/experiments",
                      headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert calls == [(bytes, bytes), (bytes, bytes)]


def test_docs_schema_and_health_stay_open(client) -> None:
    """The schema holds no data and the code is public; clients and schema-driven tests read it
    before they hold a token. Liveness is for load balancers."""
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/healthz").json()["status"] == "ok"


def test_health_shows_the_reconcilers_error_only_with_the_token(client, app) -> None:
    app.state.reconciler = SimpleNamespace(last_error="ConnectError: http://10.1.2.3:8265")
    try:
        hidden = client.get("/healthz").json()["reconciler_error"]
        shown = client.get("/healthz", headers={"authorization": f"Bearer {TOKEN}"}).json()
    finally:
        app.state.reconciler = None
    assert "10.1.2.3" not in hidden
    assert shown["reconciler_error"] == "ConnectError: http://10.1.2.3:8265"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(tmp_path, host) -> None:
    Settings(data_dir=tmp_path, host=host).check_exposure()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.2", "ablate.example.org"])
def test_beyond_loopback_a_token_or_an_explicit_opt_out_is_required(tmp_path, monkeypatch,
                                                                    host) -> None:
    monkeypatch.delenv("ABLATE_ALLOW_UNAUTHENTICATED", raising=False)
    with pytest.raises(ExposedWithoutAuth, match="ABLATE_AUTH_TOKEN"):
        Settings(data_dir=tmp_path, host=host).check_exposure()
    Settings(data_dir=tmp_path, host=host, auth_token=TOKEN).check_exposure()
    monkeypatch.setenv("ABLATE_ALLOW_UNAUTHENTICATED", "true")
    Settings(data_dir=tmp_path, host=host).check_exposure()


def test_the_stack_refuses_before_starting_anything(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("ABLATE_ALLOW_UNAUTHENTICATED", raising=False)
    stack = Stack(Settings(data_dir=tmp_path, host="0.0.0.0"))
    with pytest.raises(ExposedWithoutAuth):
        stack.start()
    assert stack.children == {} and stack.ray_temp_dir is None
