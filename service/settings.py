"""Every knob of the service, from ``ABLATE_*`` environment variables (pydantic-settings).

One machine needs no configuration at all: the defaults point at the embedded stack that
``ablate serve`` starts (SQLite under the data dir, MLflow on :5000, Ray's dashboard on :8265).
A cluster deployment changes URLs only: a PostgreSQL ``db_url``
(``postgresql+psycopg://user@host:port/db``, psycopg 3), a remote MLflow server, a Ray cluster's
dashboard address, and a ``storage_uri`` every node reaches (``s3://bucket/prefix`` or a shared
mount) so a trial retried on another node resumes from its checkpoint.

Secrets (``auth_token``, ``db_url``, which may carry a password) never travel in a Ray job's
runtime env: Ray shows it to anyone who reaches its dashboard. The job gets the path of a private
file instead (``ABLATE_SECRETS_FILE``, written by ``service.stack.secret_files``), read here as a
settings source; the controller's token does not reach the job at all.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from trainer import storage  # torch-free

SECRETS_FILE_ENV = "ABLATE_SECRETS_FILE"
JOB_SECRETS = ("db_url",)
"""Settings the job needs that may hold a password: handed over in the secrets file."""
CONTROLLER_ONLY = ("auth_token",)
"""Settings no job needs: they never leave the controller."""
LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); a name that is not
    ``localhost`` may resolve anywhere, so it counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ExposedWithoutAuth(ValueError):
    """The controller would listen beyond loopback with no token and no explicit opt-out."""


class _JobSecretsFile(PydanticBaseSettingsSource):
    """The JSON file ``ABLATE_SECRETS_FILE`` names (the Ray job's secrets); a named file that
    cannot be read is an error, not a silent fallback to default (say, a SQLite store)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get(SECRETS_FILE_ENV)
        if not path:
            return {}
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise RuntimeError(f"{SECRETS_FILE_ENV}={path} cannot be read: {err}") from err
        return {k: v for k, v in data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Service settings; relative paths are resolved against the working directory once, so the
    Ray job (which runs elsewhere) gets absolute ones."""

    model_config = SettingsConfigDict(env_prefix="ABLATE_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".ablate"), description="SQLite store, checkpoints, MLflow and Ray files"
    )
    data_roots: list[Path] = Field(
        default_factory=list,
        description="folders a spec may read datasets, tokenizers and weights from, besides "
        "data_dir (JSON list); every path a spec names must resolve under one of them",
    )
    db_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in data_dir")
    storage_uri: str = Field(
        default="", description="where trial checkpoints (and, when set, warm starts) live, "
        "so any node resumes any trial: a path every node mounts or s3://bucket/prefix; "
        "default data_dir. Credentials: each node's AWS_* variables, never this URI",
    )
    storage_endpoint_url: str = Field(
        default="", description="an S3-compatible server for s3:// storage (MinIO, Ceph, "
        "...), e.g. http://minio:9000; default AWS S3",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, description="controller (REST API) port")
    mlflow_port: int = 5000
    ray_dashboard_port: int = 8265
    ray_gcs_port: int = 0
    """GCS port of the Ray head ``ablate serve`` starts; 0 picks a free one."""

    mlflow_tracking_uri: str = Field(default="", description="default http://host:mlflow_port")
    mlflow_ui_url: str = Field(default="", description="base of run links; default tracking URI")
    ray_address: str = Field(default="", description="Ray dashboard URL the Jobs API talks to")
    controller_url: str = Field(default="", description="what the CLI talks to")

    max_variants: int = Field(default=64, ge=1, description="an expansion past this is rejected")
    max_trials: int = Field(default=256, ge=1, description="variants x seeds past this: rejected")
    max_body_bytes: int = Field(
        default=1 << 20, ge=1, description="request bodies past this are refused (413) unread"
    )
    max_retries: int = Field(default=2, ge=0, description="retries of a recoverable failure")
    max_job_resubmits: int = Field(
        default=3, ge=0, description="times the reconciler resubmits a lost job"
    )
    submit_timeout_s: float = Field(
        default=10.0, gt=0.0, description="a POST waits this long for its job submission "
        "(MLflow parent run, Ray job), then answers 201 while the submission goes on",
    )
    mlflow_request_timeout_s: int = Field(
        default=10, ge=1, description="the controller's MLflow HTTP timeout per request",
    )
    mlflow_request_retries: int = Field(
        default=2, ge=0, description="the controller's MLflow HTTP retries (trials keep "
        "MLflow's own, longer, retries: they ride out a restart of the server)",
    )
    unschedulable_after_s: float = Field(
        default=120.0, ge=0.0, description="a job whose trials fit on no node of the Ray "
        "cluster waits this long for one to join, then fails them with the reason",
    )
    reconcile_interval_s: float = Field(
        default=15.0, ge=0.0, description="period of the background reconciler; 0 = startup only"
    )
    auth_token: SecretStr | None = Field(
        default=None, description="when set, requests need 'Authorization: Bearer <token>'"
    )
    allow_unauthenticated: bool = Field(
        default=False, description="serve beyond loopback without auth_token (only behind a "
        "proxy that authenticates)",
    )
    ray_auth_token_file: Path | None = Field(
        default=None, description="file holding the Ray cluster's token (RAY_AUTH_MODE=token), "
        "sent to its Jobs API; the embedded stack writes one under data_dir/secrets",
    )
    compare_cache_entries: int = Field(
        default=256, ge=0, description="/compare and /report answers kept (one per experiment, "
        "format and query; recomputed when a trial changes); 0 = no cache",
    )
    compare_cache_bytes: int = Field(
        default=64 << 20, ge=0, description="bytes of /compare and /report answers kept",
    )
    status_cache_entries: int = Field(
        default=1024, ge=0, description="GET /experiments/{id} bodies kept (recomputed when "
        "the experiment or a trial changes); 0 = no cache",
    )
    status_cache_bytes: int = Field(
        default=32 << 20, ge=0, description="bytes of GET /experiments/{id} bodies kept",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The job's secrets file wins over the node's environment: the controller wrote it
        for this job, as it set the job's runtime env."""
        return (init_settings, _JobSecretsFile(settings_cls), env_settings, dotenv_settings,
                file_secret_settings)

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.storage_uri:
            self.storage_uri = storage.check_uri(self.storage_uri)
            if not storage.is_remote(self.storage_uri):
                self.storage_uri = str(Path(self.storage_uri).expanduser().resolve())
        if "@" in self.storage_endpoint_url:
            raise ValueError("storage_endpoint_url: no credentials in the URL; use AWS_*")
        if not self.db_url:
            self.db_url = f"sqlite:///{self.data_dir / 'ablate.db'}"
        # The embedded stack keeps MLflow and Ray's dashboard on loopback whatever ``host`` is.
        if not self.mlflow_tracking_uri:
            self.mlflow_tracking_uri = f"http://{LOOPBACK}:{self.mlflow_port}"
        if not self.mlflow_ui_url:
            uri = self.mlflow_tracking_uri
            self.mlflow_ui_url = uri if uri.startswith("http") else ""
        if not self.ray_address:
            self.ray_address = f"http://{LOOPBACK}:{self.ray_dashboard_port}"
        if not self.controller_url:
            self.controller_url = f"http://{self.host}:{self.port}"
        return self

    @property
    def checkpoint_root(self) -> storage.Location:
        return storage.join(self.storage_uri or self.data_dir, "checkpoints")

    def checkpoint_dir(self, experiment_id: str, trial_key: str) -> storage.Location:
        """A trial's checkpoint folder (or S3 prefix): the same from every node."""
        return storage.join(self.checkpoint_root, experiment_id, trial_key)

    def check_exposure(self) -> None:
        """Refuse to serve beyond loopback without a token unless explicitly allowed."""
        if is_loopback(self.host) or self.auth_token is not None or self.allow_unauthenticated:
            return
        raise ExposedWithoutAuth(
            f"the controller would listen on {self.host!r}, beyond loopback, with no token: set "
            "ABLATE_AUTH_TOKEN, or ABLATE_ALLOW_UNAUTHENTICATED=true if a proxy in front of it "
            "authenticates, or bind 127.0.0.1"
        )

    def env(self) -> dict[str, str]:
        """These settings as ``ABLATE_*`` variables (for the controller's process): every
        field, so a new setting reaches it without anyone listing it here."""
        out: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, list):  # pydantic-settings reads complex values as JSON
                value = json.dumps([str(v) for v in value])
            out[f"ABLATE_{name.upper()}"] = str(value)
        return out

    def job_env(self, secrets_file: Path) -> dict[str, str]:
        """The variables a Ray job may show: every setting but the secrets, plus the path of the
        file that holds the secrets it needs (``job_secrets``)."""
        hidden = {f"ABLATE_{name.upper()}" for name in (*JOB_SECRETS, *CONTROLLER_ONLY)}
        env = {k: v for k, v in self.env().items() if k not in hidden}
        env[SECRETS_FILE_ENV] = str(secrets_file)
        return env

    def job_secrets(self) -> dict[str, str]:
        """What goes in the job's secrets file, by field name."""
        return {name: str(getattr(self, name)) for name in JOB_SECRETS}
