#!/usr/bin/env python3
"""The image's health check: ``ablate-healthcheck [ROLE]``, exit 0 when healthy.

The role is the argument, else the one ``ablate-entrypoint`` recorded in /tmp/ablate-role (a
Dockerfile HEALTHCHECK sees the image's environment, not the entrypoint's); a container started
with another command has nothing to check. Each role is probed over HTTP on loopback, on the
endpoints each server leaves open without a token:
  controller  GET /healthz
  mlflow      GET /health
  ray-head    the dashboard's /api/gcs_healthz and the node's agent /api/healthz
  ray-worker  the node's agent /api/local_raylet_healthz
Standard library only.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

ROLE_FILE = Path("/tmp/ablate-role")
AGENT_PORT = 52365  # Ray's default dashboard-agent HTTP port; it also listens on loopback


def urls(role: str, env: dict[str, str]) -> list[str]:
    """The URLs that must answer 2xx for ``role`` to be healthy."""
    local = "http://127.0.0.1"
    if role == "controller":
        return [f"{local}:{env.get('ABLATE_PORT', '8000')}/healthz"]
    if role == "mlflow":
        return [f"{local}:{env.get('MLFLOW_PORT', '5000')}/health"]
    if role == "ray-head":
        dashboard = env.get("ABLATE_RAY_DASHBOARD_PORT", "8265")
        return [f"{local}:{dashboard}/api/gcs_healthz", f"{local}:{AGENT_PORT}/api/healthz"]
    if role == "ray-worker":
        return [f"{local}:{AGENT_PORT}/api/local_raylet_healthz"]
    return []


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        role = argv[1]
    else:
        try:
            role = ROLE_FILE.read_text().strip()
        except OSError:
            return 0  # not started by ablate-entrypoint's roles: nothing to check
    for url in urls(role, dict(os.environ)):
        try:
            with urllib.request.urlopen(url, timeout=4) as r:  # noqa: S310 (loopback only)
                if not 200 <= r.status < 300:
                    print(f"{role}: {url} answered {r.status}", file=sys.stderr)
                    return 1
        except OSError as err:
            print(f"{role}: {url}: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
