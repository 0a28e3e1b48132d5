"""Secrets handed to the Ray job and to Ray itself in files only this user can read.

A Ray Job's runtime env, entrypoint and metadata are shown to anyone who reaches Ray's dashboard
(``GET /api/jobs/``), and the runtime-env agent logs them, so the job's environment carries only
the path of a 0600 file under ``data_dir/secrets`` (a 0700 directory). The job's driver and
workers run on this node, or share the data dir as they share its checkpoints, and read the file
through ``Settings``. The Ray cluster's own token lives there too (``RAY_AUTH_TOKEN_PATH``).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from service.settings import Settings

JOB_SECRETS_NAME = "job-secrets.json"
RAY_TOKEN_NAME = "ray-auth-token"


def secrets_dir(settings: Settings) -> Path:
    """``data_dir/secrets``, created 0700 (and tightened if it exists looser)."""
    path = settings.data_dir / "secrets"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, atomically (a temp file
    in the same directory, then rename), so a reader never sees a partial or readable file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_job_secrets(settings: Settings) -> Path:
    """The file the job's ``Settings`` reads its secrets from (``ABLATE_SECRETS_FILE``)."""
    path = secrets_dir(settings) / JOB_SECRETS_NAME
    return write_private(path, json.dumps(settings.job_secrets()))


def new_ray_token(settings: Settings) -> Path:
    """A fresh 256-bit token for the Ray head the embedded stack starts, in a private file."""
    return write_private(secrets_dir(settings) / RAY_TOKEN_NAME, secrets.token_hex(32))


def ray_auth_headers(settings: Settings) -> dict[str, str]:
    """The header Ray's Jobs API wants when the cluster runs with token auth; empty when no
    token file is configured (then Ray's own ``RAY_AUTH_*`` variables apply, if any)."""
    if settings.ray_auth_token_file is None:
        return {}
    token = settings.ray_auth_token_file.read_text().strip()
    return {"Authorization": f"Bearer {token}"}
