"""One way to connect to Temporal, shared by the API, the worker and the CLI."""

from __future__ import annotations

from temporalio.client import Client, TLSConfig

from settings import Settings


async def connect(settings: Settings) -> Client:
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
    )
