"""One way to connect to Temporal, shared by the API, the worker, the CLI and the dev stack.

The connection comes from the Temporal SDK's environment configuration (`temporalio.envconfig`:
a TOML profile from TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE, with the TEMPORAL_* variables over
it), then walletflow's explicit settings over that (`connect_options`). Every client it makes
encrypts payloads with walletflow's key ring (`data_converter`, `payload_codec.py`); the worker
takes the converter from its client."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, TLSConfig
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from payload_codec import EncryptionCodec
from settings import MASK, Settings
from workflows.console import SEARCH_ATTRIBUTES

DEV_ADDRESS = "127.0.0.1:7233"  # the local dev server (scripts/dev.py, development only)

# The Temporal dev server (one history shard) reads its transfer and timer queues at most 20
# times a second by default, so every workflow task after an activity, signal or timer waited
# ~40 ms to be dispatched (3 no-op activities: ~200 ms). Raising the limit brings that to ~2 ms
# (~30 ms). The dev stack, the tests and the bench start the dev server with these; a
# production cluster spreads the queues over many shards and is tuned by its operators.
# The visibility queue too: a flow's search attributes (WalletflowState, …) are listable ~ms after
# its workflow task, not ~50 ms.
DEV_SERVER_DYNAMIC_CONFIG = {
    "history.transferProcessorMaxPollRPS": "2000",
    "history.timerProcessorMaxPollRPS": "2000",
    "history.visibilityProcessorMaxPollRPS": "2000",
}


def dev_server_args() -> list[str]:
    """The dev server's extra arguments: the dynamic config above and walletflow's search
    attributes (``workflows/console.py``; a cluster registers them with `temporal operator
    search-attribute create`, docs/operations.md)."""
    return [a for k, v in DEV_SERVER_DYNAMIC_CONFIG.items()
            for a in ("--dynamic-config-value", f"{k}={v}")] + [
        a for name, kind in SEARCH_ATTRIBUTES.items()
        for a in ("--search-attribute", f"{name}={kind}")]


async def register_search_attributes(client: Client, namespace: str = "default") -> list[str]:
    """Register those of walletflow's search attributes the namespace lacks (a dev server whose
    database file predates them, the time-skipping test server); answer the names added. A
    cluster that refuses (no operator permission) raises: register them there with `temporal
    operator search-attribute create` (docs/operations.md)."""
    kinds = {"Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
             "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT}
    try:
        known = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace))
        have = set(known.custom_attributes) | set(known.system_attributes)
    except RPCError as e:  # the time-skipping test server lists nothing: add them all
        if e.status != RPCStatusCode.UNIMPLEMENTED:
            raise
        have = set()
    missing = {n: kinds[k] for n, k in SEARCH_ATTRIBUTES.items() if n not in have}
    if missing:
        await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            search_attributes=missing, namespace=namespace))
    return sorted(missing)


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime exposing the SDK's worker metrics on a Prometheus endpoint."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


def configured_address(settings: Settings, profile: ClientConfigProfile | None = None
                       ) -> str | None:
    """The Temporal address from TEMPORAL_ADDRESS or the profile; None: none configured."""
    if settings.temporal_address:
        return settings.temporal_address
    return (profile or settings.temporal_profile_config()).address or None


def tls_option(profile_tls: ClientConfigTLS | None, settings: Settings, api_key: bool
               ) -> TLSConfig | bool:
    """The profile's TLS (server CA, server name, client certificate and key → ``TLSConfig``;
    none: on exactly when there is an API key), then the explicit settings: TEMPORAL_TLS
    switches it on or off, TEMPORAL_TLS_CERT_PATH + TEMPORAL_TLS_KEY_PATH replace the client
    certificate and key."""
    tls: TLSConfig | bool = profile_tls.to_connect_tls_config() if profile_tls else api_key
    if settings.temporal_tls is False:
        return False
    if settings.temporal_tls_cert_path and settings.temporal_tls_key_path:
        return dataclasses.replace(
            tls if isinstance(tls, TLSConfig) else TLSConfig(),
            client_cert=settings.temporal_tls_cert_path.read_bytes(),
            client_private_key=settings.temporal_tls_key_path.read_bytes())
    if settings.temporal_tls and tls is False:
        return True
    return tls


def connect_options(settings: Settings, profile: ClientConfigProfile | None = None
                    ) -> dict[str, Any]:
    """``Client.connect`` arguments: the envconfig profile with the explicit settings over it
    (address, namespace, API key, TLS); no address anywhere: the local dev server."""
    profile = profile or settings.temporal_profile_config()
    api_key = (settings.temporal_api_key.get_secret_value() if settings.temporal_api_key
               else profile.api_key)
    return {
        "target_host": configured_address(settings, profile) or DEV_ADDRESS,
        "namespace": settings.temporal_namespace or profile.namespace or "default",
        "api_key": api_key or None,
        "tls": tls_option(profile.tls, settings, bool(api_key)),
        "rpc_metadata": dict(profile.grpc_meta),
    }


def data_converter(settings: Settings) -> DataConverter:
    """The one data converter: the SDK's JSON payloads, encrypted with WALLETFLOW_CODEC_KEYS
    (AES-256-GCM; the first key encrypts, all decrypt). The API, the CLI, the worker (through
    its client) and the replay test use it; the codec endpoint (api/codec.py) decodes with the
    same ring."""
    return dataclasses.replace(DataConverter.default,
                               payload_codec=EncryptionCodec(settings.codec_keys))


async def connect(settings: Settings, runtime: Runtime | None = None,
                  interceptors: Sequence[Any] = (), lazy: bool = False) -> Client:
    """``lazy``: connect on first use (the API starts, and answers 503, while Temporal is down).
    Payloads are encrypted (`data_converter`)."""
    options = connect_options(settings)
    return await Client.connect(options.pop("target_host"), runtime=runtime,
                                interceptors=list(interceptors), lazy=lazy,
                                data_converter=data_converter(settings), **options)


def describe_connection(options: dict[str, Any]) -> dict[str, Any]:
    """`connect_options` for a log line: which TLS parts are set, never their bytes or keys."""
    tls = options["tls"]
    if isinstance(tls, TLSConfig):
        tls = {"server_name": tls.domain, "server_ca": tls.server_root_ca_cert is not None,
               "client_cert": tls.client_cert is not None}
    return {"address": options["target_host"], "namespace": options["namespace"],
            "api_key": MASK if options["api_key"] else None, "tls": tls,
            "rpc_metadata": sorted(options["rpc_metadata"])}


def log_configuration(settings: Settings, service: str) -> None:
    """The effective configuration, once at start, secrets masked."""
    try:
        temporal: Any = describe_connection(connect_options(settings))
    except Exception as e:  # noqa: BLE001 - connecting will say it louder
        temporal = f"unreadable: {type(e).__name__}"
    logging.getLogger("walletflow.config").info(
        "%s configuration: %s", service,
        json.dumps({"settings": settings.masked(), "temporal": temporal}, default=str))


def exit_now(code: int) -> None:
    """Leave without interpreter teardown: the Temporal client's Rust threads can abort a
    finalizing interpreter after a command has succeeded (temporalio/sdk-python#300)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
