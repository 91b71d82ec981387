"""The FastAPI application: one engine and one Temporal client per process (lifespan)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api import (
    analytics,
    campaigns,
    codec,
    errors,
    flows,
    health,
    metrics,
    openapi,
    orders,
    payees,
    purchases,
    ratelimit,
    razorpay,
    refunds,
    settings_routes,
    store_webhooks,
    stores,
    telemetry,
    topups,
    users,
    wallets,
    webhook_endpoints,
    webhooks,
    withdrawals,
)
from api.boundary import TextGuard
from db.engine import create_engine, resolve_database_url, session_factory
from observability import configure_logging, temporal_interceptors, tracer_provider_from_env
from settings import Settings, get_settings
from temporal_client import connect, log_configuration


def create_app(settings: Settings | None = None, tracer_provider: Any | None = None) -> FastAPI:
    """``tracer_provider``: an OpenTelemetry TracerProvider; by default one from the environment
    (none, so no tracing, unless an exporter is configured)."""
    settings = settings or get_settings()
    tracer_provider = tracer_provider or tracer_provider_from_env("api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = await resolve_database_url(settings.database_url, settings.state_dir)
        engine = create_engine(url, settings.db_pool_size)
        app.state.sessions = session_factory(engine)
        app.state.autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        app.state.temporal = await connect(settings, lazy=True,
                                           interceptors=temporal_interceptors(tracer_provider))
        try:
            yield
        finally:
            await engine.dispose()
            if tracer_provider is not None and hasattr(tracer_provider, "force_flush"):
                tracer_provider.force_flush()

    app = FastAPI(
        title="walletflow",
        version="0.1.0",
        summary="Durable wallet and payments: Temporal workflows over a double-entry ledger",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(TextGuard)  # innermost of the middlewares: telemetry sees its 422s
    errors.install(app)
    ratelimit.install(app, settings)  # per API key; RateLimit-* headers: api/ratelimit.py
    openapi.install(app)  # the completed document: api/openapi.py
    metrics.install(app)
    telemetry.install(app, tracer_provider)
    for module in (topups, orders, refunds, campaigns, withdrawals, payees, users, wallets, flows,
                   webhooks, purchases, stores, store_webhooks, analytics, settings_routes,
                   webhook_endpoints, metrics, health, codec, razorpay):
        app.include_router(module.router)
    return app


def app_factory() -> FastAPI:
    """For `uvicorn --factory api.app:app_factory`."""
    configure_logging("api")
    settings = get_settings()  # production mode: exits listing what is missing
    log_configuration(settings, "api")
    return create_app(settings)
