"""Webhooks: signing payloads exactly like Stripe (``Stripe-Signature: t=...,v1=...``) and sending
recorded events in background tasks, with retries, webhook faults (drop, duplicate) applied and
every attempt recorded for ``/_standin/deliveries``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

import httpx

from stripe_standin.calls import WEBHOOK, CallLog
from stripe_standin.config import StandinConfig
from stripe_standin.faults import Faults
from stripe_standin.store import StoredEvent
from stripe_standin.wire import JSON

logger = logging.getLogger("stripe_standin")


def sign_payload(payload: str, secrets: list[str], timestamp: int | None = None) -> str:
    """The Stripe-Signature header for ``payload``: ``t=<ts>,v1=<hmac>[,v1=<hmac>...]`` where
    each v1 is HMAC-SHA256 (hex) of ``f"{t}.{payload}"`` under one secret."""
    if not secrets:
        raise ValueError("at least one webhook secret is needed to sign a payload")
    t = int(time.time()) if timestamp is None else int(timestamp)
    signed = f"{t}.{payload}".encode()
    signatures = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
    return ",".join([f"t={t}", *(f"v1={sig}" for sig in signatures)])


class WebhookSender:
    """Sends events to ``config.webhook_url`` (read at each attempt, so config changes apply)."""

    def __init__(self, config: StandinConfig, faults: Faults, calls: CallLog) -> None:
        self.config = config
        self.faults = faults
        self.calls = calls
        self.deliveries: deque[JSON] = deque(maxlen=10_000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    def dispatch(self, event: StoredEvent) -> None:
        """Apply webhook faults, then deliver in the background (the caller does not wait)."""
        self.calls.count(WEBHOOK, event.flow_id)
        if not self.config.webhook_url:
            return
        fault = self.faults.take(WEBHOOK, event.flow_id)
        copies = 1
        if fault is not None:
            self.calls.count(WEBHOOK, event.flow_id, fault=True)
            if fault.mode == "drop":
                logger.info("dropping %s %s (injected fault)", event.event["type"], event.id)
                return
            copies = fault.copies
        self._spawn(self._deliver(event, copies))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("stand-in background task failed", exc_info=task.exception())

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _deliver(self, event: StoredEvent, copies: int) -> None:
        for copy_number in range(1, copies + 1):
            await self._deliver_with_retries(event, copy_number)

    async def _deliver_with_retries(self, event: StoredEvent, copy_number: int) -> None:
        delays = self.config.webhook_retry_delays
        for attempt in range(1, len(delays) + 2):
            result = await self.attempt_delivery(event, attempt=attempt, copy_number=copy_number)
            if result is None or result["ok"]:
                return
            if attempt <= len(delays):
                await asyncio.sleep(delays[attempt - 1])
        logger.warning("giving up delivering %s after %d attempts", event.id, len(delays) + 1)

    async def attempt_delivery(self, event: StoredEvent, *, attempt: int = 1,
                               copy_number: int = 1) -> JSON | None:
        """POST the event once to the current webhook URL; record and return the attempt (None
        when no URL or secret is configured)."""
        url, secrets = self.config.webhook_url, list(self.config.webhook_secrets)
        if not url or not secrets:
            if url:
                logger.warning("not delivering %s: no webhook secret configured", event.id)
            return None
        status, error = await self._post(url, event, secrets)
        ok = status is not None and 200 <= status < 300
        result: JSON = {"event_id": event.id, "event_type": event.event["type"], "url": url,
                        "attempt": attempt, "copy": copy_number, "status_code": status,
                        "error": error, "ok": ok, "time": round(time.time(), 3)}
        self.deliveries.append(result)
        if not ok:
            logger.info("webhook %s to %s failed: %s", event.id, url, error or status)
        return result

    async def _post(self, url: str, event: StoredEvent,
                    secrets: list[str]) -> tuple[int | None, str | None]:
        """Send the payload freshly signed; the HTTP status, or the transport error."""
        if self._http is None:
            self._http = httpx.AsyncClient()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                   "Stripe-Signature": sign_payload(event.payload, secrets)}
        try:
            response = await self._http.post(url, content=event.payload.encode(), headers=headers,
                                             timeout=self.config.webhook_timeout_seconds)
        except httpx.HTTPError as e:
            return None, f"{type(e).__name__}: {e}"
        return response.status_code, None
