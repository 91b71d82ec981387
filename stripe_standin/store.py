"""The stand-in's state: payment intents, refunds, payouts (plain Stripe-shaped dicts), idempotency
records and recorded events, with lookups, idempotency semantics and optional JSON persistence.

The resources' own rules (validation, construction, status transitions) live in
`payment_intents`, `refunds` and `payouts`. Everything lives on a `Store` instance owned by one
app; nothing here is module-level state."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stripe_standin.params import fingerprint
from stripe_standin.wire import API_VERSION, JSON, StandinError, new_id, now

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
STATE_VERSION = 1
# The state file is rewritten at most this often (a change marks it dirty; one flush writes
# every change since the last): the whole state as JSON on every change cost the stand-in
# 45-56 ms of CPU per top-up after ~500 flows (bench/README.md). A clean shutdown flushes.
SAVE_INTERVAL_SECONDS = 1.0


@dataclass
class IdempotencyRecord:
    method: str
    path: str
    fingerprint: str
    status: int
    body: JSON
    request_id: str
    created: int


@dataclass
class StoredEvent:
    event: JSON
    payload: str  # the exact JSON text that is signed and delivered
    # The flow when the object's own metadata has none (a refund made without metadata).
    flow_hint: str | None = None

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def payment_intent_id(self) -> str | None:
        """The payment intent the event is about (refunds and charges name theirs)."""
        obj = self.event.get("data", {}).get("object", {})
        if obj.get("object") == "payment_intent":
            return obj.get("id")
        return obj.get("payment_intent")

    @property
    def flow_id(self) -> str | None:
        obj = self.event.get("data", {}).get("object", {})
        return (obj.get("metadata") or {}).get("flow_id") or self.flow_hint

    def to_json(self) -> JSON:
        item: JSON = {"event": self.event, "payload": self.payload}
        if self.flow_hint is not None:
            item["flow_hint"] = self.flow_hint
        return item


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    """Payment intents, refunds, payouts, idempotency records and events. Callers serialize
    mutations (the app holds one asyncio.Lock around check-execute-record); `save` persists when a
    file is set: within SAVE_INTERVAL_SECONDS, coalesced, and at `aclose`."""

    def __init__(self, state_file: str | os.PathLike[str] | None = None) -> None:
        self.payment_intents: dict[str, JSON] = {}
        self.refunds: dict[str, JSON] = {}
        self.payouts: dict[str, JSON] = {}
        self.checkout_sessions: dict[str, JSON] = {}  # `checkout_sessions.py`
        self.connect: dict[str, dict[str, Any]] = {}  # Connect's objects: `connect.py`
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.events: dict[str, StoredEvent] = {}
        self.state_file = Path(state_file) if state_file else None
        self._save_lock = asyncio.Lock()
        self._dirty = False
        self._flusher: asyncio.Task[None] | None = None
        self._last_write = 0.0  # loop time of the last write
        self._closing = asyncio.Event()  # set at shutdown: a waiting flush writes at once
        if self.state_file is not None and self.state_file.exists():
            self._load(self.state_file)

    # persistence

    def _load(self, path: Path) -> None:
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            return
        try:
            state = json.loads(text)
            if state.get("version") != STATE_VERSION:
                raise ValueError(f"unsupported state version {state.get('version')!r}")
            self.payment_intents = dict(state["payment_intents"])
            self.refunds = dict(state.get("refunds", {}))  # absent in files from before refunds
            self.payouts = dict(state.get("payouts", {}))  # absent in files from before payouts
            self.checkout_sessions = dict(state.get("checkout_sessions", {}))  # likewise
            self.connect = dict(state.get("connect", {}))  # absent in files from before Connect
            horizon = now() - IDEMPOTENCY_TTL_SECONDS
            self.idempotency = {key: IdempotencyRecord(**record)
                                for key, record in state["idempotency"].items()
                                if record["created"] >= horizon}
            self.events = {item["event"]["id"]: StoredEvent(item["event"], item["payload"],
                                                            item.get("flow_hint"))
                           for item in state["events"]}
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path} is not a readable stand-in state file: {e}") from e

    def snapshot(self) -> JSON:
        return {
            "version": STATE_VERSION,
            "payment_intents": self.payment_intents,
            "refunds": self.refunds,
            "payouts": self.payouts,
            "checkout_sessions": self.checkout_sessions,
            "connect": self.connect,
            "idempotency": {key: asdict(record) for key, record in self.idempotency.items()},
            "events": [e.to_json() for e in self.events.values()],
        }

    async def save(self) -> None:
        """The state changed: it is written within SAVE_INTERVAL_SECONDS (one background write
        for every change since the last), not before this returns."""
        if self.state_file is None:
            return
        self._dirty = True
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        while self._dirty:  # a change made during a write is written by the next round
            delay = self._last_write + SAVE_INTERVAL_SECONDS - asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), max(0.0, delay))
            await self.flush()

    async def flush(self) -> None:
        """Write the state now if it changed since the last write."""
        if self.state_file is None:
            return
        async with self._save_lock:  # snapshot inside the lock: the last write is the newest
            if not self._dirty:
                return
            self._dirty = False
            self._last_write = asyncio.get_running_loop().time()
            text = json.dumps(self.snapshot(), separators=(",", ":"))
            try:
                await asyncio.to_thread(_atomic_write, self.state_file, text)
            except BaseException:
                self._dirty = True  # not written: the next flush tries again
                raise

    async def aclose(self) -> None:
        """The final flush (at shutdown): nothing saved is lost."""
        self._closing.set()
        if self._flusher is not None:  # a failed background write is retried just below
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.flush()

    # idempotency

    def idempotent_result(self, key: str, method: str, path: str,
                          params: JSON) -> IdempotencyRecord | None:
        """The stored result for ``key``; an idempotency_error when it was used differently."""
        record = self.idempotency.get(key)
        if record is None:
            return None
        if record.created < now() - IDEMPOTENCY_TTL_SECONDS:
            del self.idempotency[key]
            return None
        if (record.method, record.path) != (method, path) or (
                record.fingerprint != fingerprint(method, path, params)):
            raise StandinError(
                400, "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were "
                f"first used with. Try using a key other than '{key}' if you meant to execute a "
                "different request.")
        return record

    def remember(self, key: str, method: str, path: str, params: JSON, status: int, body: JSON,
                 request_id: str) -> None:
        self.idempotency[key] = IdempotencyRecord(
            method, path, fingerprint(method, path, params), status, copy.deepcopy(body),
            request_id, now())

    # lookups

    def get_payment_intent(self, pi_id: str) -> JSON:
        pi = self.payment_intents.get(pi_id)
        if pi is None:
            raise StandinError.missing("payment_intent", pi_id)
        return pi

    def get_refund(self, re_id: str) -> JSON:
        refund = self.refunds.get(re_id)
        if refund is None:
            raise StandinError.missing("refund", re_id, param="id")
        return refund

    def get_payout(self, po_id: str) -> JSON:
        payout = self.payouts.get(po_id)
        if payout is None:
            raise StandinError.missing("payout", po_id, param="id")
        return payout

    def refunds_of(self, pi_id: str) -> list[JSON]:
        return [r for r in self.refunds.values() if r["payment_intent"] == pi_id]

    def refund_flow_id(self, refund: JSON) -> str | None:
        """The refund's own ``metadata.flow_id``, else its payment intent's."""
        flow_id = refund["metadata"].get("flow_id")
        if flow_id is None:
            pi = self.payment_intents.get(refund["payment_intent"]) or {}
            flow_id = pi.get("metadata", {}).get("flow_id")
        return flow_id

    # events

    def record_event(self, type_: str, obj: JSON, *, pending_webhooks: int,
                     request_id: str | None = None, idempotency_key: str | None = None,
                     flow_hint: str | None = None) -> StoredEvent:
        """Record an event carrying a snapshot of ``obj``; its payload is serialized once here."""
        event: JSON = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": now(),
            "data": {"object": copy.deepcopy(obj)},
            "livemode": False,
            "pending_webhooks": pending_webhooks,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": type_,
        }
        stored = StoredEvent(event, json.dumps(event, indent=2), flow_hint)
        self.events[stored.id] = stored
        return stored
