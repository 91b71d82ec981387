"""One way to connect to Temporal, shared by the API, the worker and the CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, TLSConfig
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from settings import Settings

# The Temporal dev server (one history shard) reads its transfer and timer queues at most 20
# times a second by default, so every workflow task after an activity, signal or timer waited
# ~40 ms to be dispatched (3 no-op activities: ~200 ms). Raising the limit brings that to ~2 ms
# (~30 ms). The dev stack, the tests and the bench start the dev server with these; a
# production cluster spreads the queues over many shards and is tuned by its operators.
DEV_SERVER_DYNAMIC_CONFIG = {
    "history.transferProcessorMaxPollRPS": "2000",
    "history.timerProcessorMaxPollRPS": "2000",
}


def dev_server_args() -> list[str]:
    return [a for k, v in DEV_SERVER_DYNAMIC_CONFIG.items()
            for a in ("--dynamic-config-value", f"{k}={v}")]


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime exposing the SDK's worker metrics on a Prometheus endpoint."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


async def connect(settings: Settings, runtime: Runtime | None = None,
                  interceptors: Sequence[Any] = ()) -> Client:
    tls: TLSConfig | bool = settings.temporal_tls
    if settings.temporal_tls_cert_path and settings.temporal_tls_key_path:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert_path.read_bytes(),
            client_private_key=settings.temporal_tls_key_path.read_bytes(),
        )
    return await Client.connect(
        settings.temporal_target,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key,
        tls=tls if (tls or settings.temporal_api_key) else False,
        runtime=runtime,
        interceptors=list(interceptors),
    )


def exit_now(code: int) -> None:
    """Leave without interpreter teardown: the Temporal client's Rust threads can abort a
    finalizing interpreter after a command has succeeded (temporalio/sdk-python#300)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
