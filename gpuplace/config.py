"""The gpuplace configuration: one YAML file, overridable from the environment, validated at start.

Why pydantic-settings with the environment above the file: a Deployment ships one ConfigMap for every
cluster and patches single values per environment (`GPUPLACE_SCHEDULER__PORT=9000`,
`GPUPLACE_KUBERNETES__KUBECONFIG=/path`; prefix `GPUPLACE_`, `__` between nesting levels). An invalid
value fails the start with the offending field named (`scheduler.port: …`), never at the first request.

Sections: `kubernetes` (how to reach the API server), `logging`, `leader_election`
(scheduler.leader.LeaderElectionSettings), `scheduler`
(scheduler.settings.SchedulerSettings), `webhook` (webhook.settings.WebhookSettings, when that package
is installed) and `webhook_server` (where the webhook listens: its own HTTPS port).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gpuplace.certctl import CertificateSettings
from gpuplace.registration import RegistrationSettings
from scheduler.leader import LeaderElectionSettings
from scheduler.settings import SchedulerSettings

try:  # the webhook package is optional for the extender; its settings section appears when it exists
    from webhook.settings import WebhookSettings as _WebhookSettings

    HAVE_WEBHOOK = True
except ImportError:  # pragma: no cover - only while the webhook package is absent

    class _WebhookSettings(BaseModel):  # type: ignore[no-redef]
        model_config = ConfigDict(extra="allow", frozen=True)

    HAVE_WEBHOOK = False


class ConfigError(Exception):
    """The configuration cannot be used; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KubernetesSettings(_Section):
    kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig file; absent → the in-cluster service account, else ~/.kube/config.",
    )
    context: str | None = Field(default=None, description="Kubeconfig context; absent → its current one.")


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = Field(default=False, alias="json", description="One JSON object per line.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WebhookServer(_Section):
    """Where the admission webhook listens (always HTTPS: kube-apiserver calls webhooks over TLS only)."""

    enabled: bool = Field(default=False, description="Serve the webhook. Default false.")
    host: str = "0.0.0.0"
    port: int = Field(default=8443, ge=1, le=65535)
    ops_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Plain HTTP /healthz /readyz /metrics (webhook-only processes).",
    )
    cert_file: Path | None = None
    key_file: Path | None = None
    certificates: CertificateSettings = Field(default_factory=CertificateSettings)
    registration: RegistrationSettings | None = Field(
        default=None, description="Register the MutatingWebhookConfiguration (gpuplace/registration.py)."
    )

    @model_validator(mode="after")
    def _tls(self) -> WebhookServer:
        if self.enabled and (self.cert_file is None or self.key_file is None):
            raise ValueError("cert_file and key_file are required when the webhook is enabled")
        return self


class GpuplaceConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GPUPLACE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    leader_election: LeaderElectionSettings = Field(default_factory=LeaderElectionSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    webhook: _WebhookSettings = Field(default_factory=_WebhookSettings)
    webhook_server: WebhookServer = Field(default_factory=WebhookServer)

    @model_validator(mode="after")
    def _ports(self) -> GpuplaceConfig:
        s, w = self.scheduler, self.webhook_server
        if s.enabled and w.enabled and s.port == w.port:
            raise ValueError(f"scheduler.port and webhook_server.port are both {s.port}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings  # the environment overrides the file (passed as init values)


def _explain(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "config"
        lines.append(f"{where}: {err['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(path: Path | None = None) -> GpuplaceConfig:
    """Read `path` (YAML; None = defaults only) under the environment's overrides."""
    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        return GpuplaceConfig(**data)
    except ValidationError as e:
        raise ConfigError(_explain(e)) from None
