"""Webhooks as Razorpay sends them: the raw JSON body, ``X-Razorpay-Signature`` (HMAC-SHA256
hex of the body under the webhook secret) and ``X-Razorpay-Event-Id``; delivered in background
tasks with retries, webhook faults applied, every attempt recorded."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import deque
from typing import Any

import httpx

from razorpay_standin.config import RazorpayStandinConfig
from razorpay_standin.faults import Faults
from razorpay_standin.store import JSON, StoredEvent

logger = logging.getLogger("razorpay_standin")


def sign_body(body: str | bytes, secret: str) -> str:
    """The ``X-Razorpay-Signature`` of ``body``."""
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def headers_for(event: StoredEvent, secret: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Razorpay-Event-Id": event.id,
            "X-Razorpay-Signature": sign_body(event.payload, secret)}


class WebhookSender:
    def __init__(self, config: RazorpayStandinConfig, faults: Faults) -> None:
        self.config, self.faults = config, faults
        self.deliveries: deque[JSON] = deque(maxlen=10_000)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http: httpx.AsyncClient | None = None

    def dispatch(self, event: StoredEvent) -> None:
        """Apply webhook faults, then deliver in the background."""
        if not self.config.webhook_url:
            return
        copies = 1
        fault = self.faults.take("webhook", event.flow_id)
        if fault is not None:
            if fault.mode == "drop":
                logger.info("dropping %s %s (injected fault)", event.type, event.id)
                return
            copies = fault.copies
        task = asyncio.create_task(self._deliver(event, copies))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, event: StoredEvent, copies: int) -> None:
        for copy_number in range(1, copies + 1):
            delays = self.config.webhook_retry_delays
            for attempt in range(1, len(delays) + 2):
                result = await self.attempt(event, attempt, copy_number)
                if result is None or result["ok"]:
                    break
                if attempt <= len(delays):
                    await asyncio.sleep(delays[attempt - 1])

    async def attempt(self, event: StoredEvent, attempt: int = 1,
                      copy_number: int = 1) -> JSON | None:
        """POST the event once to the configured URL; the attempt as recorded."""
        url, secret = self.config.webhook_url, self.config.webhook_secret
        if not url or not secret:
            return None
        if self._http is None:
            self._http = httpx.AsyncClient()
        status: int | None
        error: str | None = None
        try:
            response = await self._http.post(url, content=event.payload.encode(),
                                             headers=headers_for(event, secret),
                                             timeout=self.config.webhook_timeout_seconds)
            status = response.status_code
        except httpx.HTTPError as e:
            status, error = None, f"{type(e).__name__}: {e}"
        ok = status is not None and 200 <= status < 300
        result: JSON = {"event_id": event.id, "event_type": event.type, "url": url,
                        "attempt": attempt, "copy": copy_number, "status_code": status,
                        "error": error, "ok": ok, "time": round(time.time(), 3)}
        self.deliveries.append(result)
        return result

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None
