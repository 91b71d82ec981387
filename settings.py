"""Configuration from the environment (pydantic-settings).

``WALLETFLOW_ENV=development`` (the default): unset database/Temporal settings mean "use the
embedded ones" (embedded PostgreSQL, the local Temporal dev server) and the Stripe stand-in's
key and webhook secret are the defaults. ``WALLETFLOW_ENV=production``: the process refuses to
start unless DATABASE_URL, a Temporal address (or a Temporal config profile), a real Stripe key
and real webhook secrets are configured (`production_problems`)."""

from __future__ import annotations

import base64
import json
import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from limits import parse_many
from limits.aio.storage import MovingWindowSupport
from limits.storage import SCHEMES
from pydantic import BaseModel, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from temporalio.envconfig import ClientConfigProfile

from payload_codec import DEV_CODEC_KEY, DEV_CODEC_KEYS, parse_key_ring


class PointsPackage(BaseModel):
    points: int
    price: str  # decimal string in the price currency
    currency: str = "EUR"


DEFAULT_PACKAGES = {
    "basic": {"points": 100, "price": "9.99", "currency": "EUR"},
    "premium": {"points": 550, "price": "39.99", "currency": "EUR"},
    "pro": {"points": 1200, "price": "79.99", "currency": "EUR"},
}
DEV_STRIPE_KEY = "sk_test_walletflow_standin"
DEV_STRIPE_KEY_PREFIX = "sk_test_walletflow"  # the stand-in's keys (dev stack, tests, bench)
DEV_WEBHOOK_SECRET = "whsec_walletflow_dev_secret"
# The Razorpay stand-in's development keys (razorpay_standin/config.py), refused in production.
DEV_RAZORPAY_KEY_ID = "rzp_test_walletflow"
DEV_RAZORPAY_KEY_SECRET = "rzp_secret_walletflow_standin"  # noqa: S105
DEV_RAZORPAY_WEBHOOK_SECRET = "rzp_whsec_walletflow_standin"  # noqa: S105
MASK = "**********"
TEMPORAL_UI_ORIGINS = "http://127.0.0.1:8233,http://localhost:8233"  # the dev stack's and compose's
_URLS = ("database_url", "rate_limit_storage_uri")  # shown with their password as ***


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    # development | production (production refuses to start without its configuration)
    walletflow_env: Literal["development", "production"] = "development"

    # PostgreSQL: any SQLAlchemy URL (postgresql://… is accepted; libpq's sslmode, sslrootcert,
    # sslcert, sslkey are honoured). Unset (development only): embedded PostgreSQL with its
    # data under STATE_DIR/pgdata.
    database_url: str | None = None
    db_pool_size: int = 10
    state_dir: Path = Path(".walletflow")  # a relative path is taken from the project folder

    @field_validator("state_dir")
    @classmethod
    def _from_project(cls, v: Path) -> Path:
        """The same folder whichever directory a command runs from (the CLI, the worker)."""
        return v if v.is_absolute() else Path(__file__).resolve().parent / v

    # Temporal: the SDK's environment configuration (TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE
    # TOML profiles and the TEMPORAL_* variables) first, these explicit settings on top
    # (temporal_client.connect_options). No address anywhere: the local dev server.
    temporal_address: str | None = None
    temporal_namespace: str | None = None  # unset: the profile's, else "default"
    temporal_task_queue: str = "walletflow"
    temporal_api_key: SecretStr | None = None
    temporal_tls: bool | None = None  # unset: the profile's choice (on with an API key)
    temporal_tls_cert_path: Path | None = None
    temporal_tls_key_path: Path | None = None
    temporal_config_file: Path | None = None  # unset: the SDK's default file, if any
    temporal_profile: str | None = None  # unset: "default"
    # Workflows kept in the worker's memory between tasks. A top-up waiting for its payment
    # costs ~0.12 MB cached; an evicted one is replayed from history when its webhook arrives.
    worker_max_cached_workflows: int = 500
    # Worker slots and pollers (bench/README.md measures them); unset: the Temporal SDK's
    # defaults (100 slots of each kind, 5 pollers of each queue).
    worker_max_concurrent_workflow_tasks: int | None = None
    worker_max_concurrent_activities: int | None = None
    worker_max_concurrent_local_activities: int | None = None
    worker_max_concurrent_workflow_task_polls: int | None = None
    worker_max_concurrent_activity_task_polls: int | None = None
    # Ledger group commit: statements in flight at once in one worker (activities/ledger.py)
    ledger_max_in_flight: int = 2
    # Fan the event outbox out into outbound webhook deliveries (one dispatcher is enough;
    # several are safe).
    run_dispatcher: bool = True
    # The janitor's Temporal Schedule (schedules.py): reconcile, credit paid flows whose
    # webhooks were lost, remove orphan flow rows; every this many seconds (0: not scheduled).
    janitor_interval_seconds: float = 300
    # host:port of the worker's Prometheus endpoint (Temporal SDK metrics); unset: off
    worker_metrics_address: str | None = None
    # host:port of the worker's /healthz and /readyz (polling, PostgreSQL and Temporal
    # reachable); unset: off
    worker_health_address: str | None = None

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_body_bytes: int = 64 * 1024
    # Rate limits per API key (api/ratelimit.py, a moving window): `limits` notation, several
    # separated by ";" (all apply). A tenant's settings {"rate_limits": {"per_key": "50/second"}}
    # replace the default for its keys.
    rate_limit_enabled: bool = True
    rate_limit_default: str = "100/second;2000/minute"
    # memory:// (each API process counts alone) or a store the API replicas share: redis://,
    # rediss://, redis+sentinel://, redis+cluster://, valkey://, mongodb:// (memcached cannot
    # hold a moving window)
    rate_limit_storage_uri: str = "memory://"

    @field_validator("rate_limit_default")
    @classmethod
    def _limits_notation(cls, v: str) -> str:
        try:
            if not parse_many(v):
                raise ValueError("empty")
        except ValueError:
            raise ValueError(f"{v!r} is not a rate limit such as '100/second;2000/minute'"
                             ) from None
        return v

    @field_validator("rate_limit_storage_uri")
    @classmethod
    def _moving_window_store(cls, v: str) -> str:
        scheme = v.partition("://")[0].removeprefix("async+")
        storage = SCHEMES.get(f"async+{scheme}")
        if storage is None or not issubclass(storage, MovingWindowSupport):
            raise ValueError(f"{scheme or v!r}: use memory://, redis://, rediss://, "
                             "redis+sentinel://, redis+cluster://, valkey:// or mongodb://")
        return v

    # Stripe. With real keys and no STRIPE_API_BASE the same code talks to real Stripe.
    stripe_api_key: SecretStr = SecretStr(DEV_STRIPE_KEY)
    stripe_api_base: str | None = None
    stripe_checkout_base: str | None = None  # stand-in only: hosted page at {base}/checkout/{id}
    # Comma-separated; several during secret rotation (each is tried).
    stripe_webhook_secrets: SecretStr = SecretStr(DEV_WEBHOOK_SECRET)
    stripe_webhook_tolerance_seconds: int = 300
    stripe_timeout_seconds: float = 10.0
    # Send only what each Stripe call needs (no PaymentIntent ``description`` or
    # ``automatic_payment_methods``), for Stripe emulators that refuse them (e.g. localstripe).
    stripe_minimal_params: bool = False
    # Hosted Checkout Sessions (gateway "stripe_checkout"): where the payer returns, unless the
    # request or the tenant (settings group "payments") names a URL; "{flow_id}" is replaced.
    stripe_checkout_success_url: str = "http://localhost:8000/v1/flows/{flow_id}"
    stripe_checkout_cancel_url: str | None = None  # None: the success URL

    # Razorpay, a second gateway: configured when RAZORPAY_KEY_ID is set. With real keys and
    # no RAZORPAY_API_BASE the same code talks to real Razorpay.
    razorpay_key_id: str | None = None
    razorpay_key_secret: SecretStr = SecretStr("")
    razorpay_webhook_secret: SecretStr = SecretStr("")
    razorpay_api_base: str | None = None
    razorpay_checkout_base: str | None = None  # stand-in only: hosted page at {base}/checkout/{id}
    # Razorpay signs no timestamp: an event whose created_at is older than this is refused
    # (Razorpay retries a failed delivery for about a day).
    razorpay_webhook_tolerance_seconds: int = 36 * 3600
    razorpay_timeout_seconds: float = 10.0

    # Temporal payload encryption (payload_codec.py): "k2:<base64 32 bytes>,k1:<base64>", the
    # first encrypts, all decrypt. The default is the public development key (refused in
    # production).
    walletflow_codec_keys: SecretStr = SecretStr(DEV_CODEC_KEYS)
    # Bearer token of the codec endpoint the Temporal UI decodes through (api/codec.py); unset:
    # the endpoint refuses every request, unless the ring is the public development key only.
    walletflow_codec_token: SecretStr | None = None
    # Comma-separated origins (the Temporal UI's) allowed to call the codec endpoint.
    walletflow_codec_cors_origins: str = TEMPORAL_UI_ORIGINS

    # Flows
    topup_expiry_seconds: int = 1800
    points_packages_json: str = json.dumps(DEFAULT_PACKAGES)

    @field_validator("walletflow_codec_keys")
    @classmethod
    def _key_ring(cls, v: SecretStr) -> SecretStr:
        parse_key_ring(v.get_secret_value())  # ValueError: reported as a configuration error
        return v

    @field_validator("walletflow_codec_token")
    @classmethod
    def _empty_token_is_none(cls, v: SecretStr | None) -> SecretStr | None:
        return v if v is not None and v.get_secret_value().strip() else None

    @model_validator(mode="after")
    def _production_ready(self) -> Settings:
        if self.walletflow_env == "production" and (problems := production_problems(self)):
            raise ValueError("WALLETFLOW_ENV=production needs:\n"
                             + "\n".join(f"  - {p}" for p in problems))
        return self

    @property
    def webhook_secrets(self) -> list[str]:
        raw = self.stripe_webhook_secrets.get_secret_value()
        return [s.strip() for s in raw.split(",") if s.strip()]

    @property
    def payment_gateways(self) -> tuple[str, ...]:
        """The gateway names a request (or a tenant's default) may choose: the configured ones."""
        return ("stripe", "stripe_checkout", *(("razorpay",) if self.razorpay_key_id else ()))

    @property
    def codec_keys(self) -> dict[str, bytes]:
        """The payload key ring, in order (the first encrypts)."""
        return parse_key_ring(self.walletflow_codec_keys.get_secret_value())

    @property
    def codec_is_development(self) -> bool:
        """Payloads are encrypted with the public development key only."""
        return list(self.codec_keys.values()) == [base64.b64decode(DEV_CODEC_KEY)]

    @property
    def codec_cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.walletflow_codec_cors_origins.split(",")
                if o.strip()]

    @cached_property
    def points_packages(self) -> dict[str, PointsPackage]:
        return {k: PointsPackage(**v) for k, v in json.loads(self.points_packages_json).items()}

    def temporal_profile_config(self) -> ClientConfigProfile:
        """The Temporal SDK's environment configuration: the TOML profile (TEMPORAL_CONFIG_FILE
        or the SDK's default file; TEMPORAL_PROFILE, else "default") with the TEMPORAL_*
        variables applied over it."""
        return ClientConfigProfile.load(self.temporal_profile,
                                        config_source=self.temporal_config_file)

    def __repr_args__(self) -> Any:
        """repr()/str() show the database URL without its password (secrets show as
        ``SecretStr('**********')`` already)."""
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name in _URLS and value else value)

    def masked(self) -> dict[str, Any]:
        """Every setting, for the start-up log line: secrets as ``**********``, the database
        password as ``***``."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = MASK if value.get_secret_value() else ""
            elif name in _URLS and value:
                value = mask_url(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


def mask_url(url: str) -> str:
    """A database URL with its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is not echoed at all
        return "<unparsable URL>"


def production_problems(settings: Settings) -> list[str]:
    """What production mode still needs, in words (empty: ready to start)."""
    problems = []
    if not settings.database_url:
        problems.append("DATABASE_URL (production never starts an embedded PostgreSQL)")
    cfg_file = settings.temporal_config_file
    if cfg_file is not None and not cfg_file.is_file():
        problems.append(f"TEMPORAL_CONFIG_FILE: {cfg_file} does not exist")
    elif not settings.temporal_address:
        try:
            address = settings.temporal_profile_config().address
        except Exception as e:  # noqa: BLE001 - reported with the rest
            problems.append(f"a readable Temporal config profile ({e})")
        else:
            if not address:
                problems.append("TEMPORAL_ADDRESS, or a Temporal config profile with an address"
                                " (TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE)")
    key = settings.stripe_api_key.get_secret_value()
    if not key or key.startswith(DEV_STRIPE_KEY_PREFIX):
        problems.append("STRIPE_API_KEY: a real Stripe key (not the stand-in's development key)")
    secrets = settings.webhook_secrets
    if not secrets or DEV_WEBHOOK_SECRET in secrets:
        problems.append("STRIPE_WEBHOOK_SECRETS: your Stripe endpoint's signing secret(s), not "
                        "the development default")
    problems += _razorpay_problems(settings)
    if base64.b64decode(DEV_CODEC_KEY) in settings.codec_keys.values():
        problems.append("WALLETFLOW_CODEC_KEYS: your own payload encryption key(s), not the "
                        "development key")
    return problems


def _razorpay_problems(settings: Settings) -> list[str]:
    """Razorpay is optional: only a configured one (RAZORPAY_KEY_ID set) needs its secrets."""
    if not settings.razorpay_key_id:
        return []
    problems = []
    if settings.razorpay_key_id.startswith(DEV_RAZORPAY_KEY_ID) or \
            settings.razorpay_key_secret.get_secret_value() in ("", DEV_RAZORPAY_KEY_SECRET):
        problems.append("RAZORPAY_KEY_ID / RAZORPAY_KEY_SECRET: a real Razorpay key pair "
                        "(not the stand-in's development keys)")
    if settings.razorpay_webhook_secret.get_secret_value() in ("", DEV_RAZORPAY_WEBHOOK_SECRET):
        problems.append("RAZORPAY_WEBHOOK_SECRET: your Razorpay webhook's secret, not the "
                        "development default")
    return problems


def get_settings() -> Settings:
    """The process's settings; an invalid configuration (production mode missing something,
    a malformed value) ends the process with one message listing every problem."""
    try:
        return Settings()
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where.upper()}: {msg}" if where else msg)
        print("walletflow: invalid configuration\n" + "\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
