"""Configuration from the environment (pydantic-settings). Unset database/Temporal settings mean
"use the embedded ones" (embedded PostgreSQL, the local Temporal dev server)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class PointsPackage(BaseModel):
    points: int
    price: str  # decimal string in the price currency
    currency: str = "EUR"


DEFAULT_PACKAGES = {
    "basic": {"points": 100, "price": "9.99", "currency": "EUR"},
    "premium": {"points": 550, "price": "39.99", "currency": "EUR"},
    "pro": {"points": 1200, "price": "79.99", "currency": "EUR"},
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    # PostgreSQL: any SQLAlchemy URL (postgresql://… is accepted). Unset: embedded PostgreSQL
    # with its data under STATE_DIR/pgdata.
    database_url: str | None = None
    db_pool_size: int = 10
    state_dir: Path = Path(".walletflow")  # a relative path is taken from the project folder

    @field_validator("state_dir")
    @classmethod
    def _from_project(cls, v: Path) -> Path:
        """The same folder whichever directory a command runs from (the CLI, the worker)."""
        return v if v.is_absolute() else Path(__file__).resolve().parent / v

    # Temporal. Unset address: the local dev server (127.0.0.1:7233).
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_task_queue: str = "walletflow"
    temporal_api_key: str | None = None
    temporal_tls: bool = False
    temporal_tls_cert_path: Path | None = None
    temporal_tls_key_path: Path | None = None
    # Workflows kept in the worker's memory between tasks. A top-up waiting for its payment
    # costs ~0.12 MB cached; an evicted one is replayed from history when its webhook arrives.
    worker_max_cached_workflows: int = 500
    # Fan the event outbox out into outbound webhook deliveries (one dispatcher is enough;
    # several are safe).
    run_dispatcher: bool = True
    # host:port of the worker's Prometheus endpoint (Temporal SDK metrics); unset: off
    worker_metrics_address: str | None = None
    # host:port of the worker's /healthz and /readyz (polling, PostgreSQL and Temporal
    # reachable); unset: off
    worker_health_address: str | None = None

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_body_bytes: int = 64 * 1024

    # Stripe. With real keys and no STRIPE_API_BASE the same code talks to real Stripe.
    stripe_api_key: str = "sk_test_walletflow_standin"
    stripe_api_base: str | None = None
    stripe_checkout_base: str | None = None  # stand-in only: hosted page at {base}/checkout/{id}
    # Comma-separated; several during secret rotation (each is tried).
    stripe_webhook_secrets: str = "whsec_walletflow_dev_secret"
    stripe_webhook_tolerance_seconds: int = 300
    stripe_timeout_seconds: float = 10.0

    # Flows
    topup_expiry_seconds: int = 1800
    points_packages_json: str = json.dumps(DEFAULT_PACKAGES)

    @property
    def webhook_secrets(self) -> list[str]:
        return [s.strip() for s in self.stripe_webhook_secrets.split(",") if s.strip()]

    @cached_property
    def points_packages(self) -> dict[str, PointsPackage]:
        return {k: PointsPackage(**v) for k, v in json.loads(self.points_packages_json).items()}

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or "127.0.0.1:7233"


def get_settings() -> Settings:
    return Settings()
