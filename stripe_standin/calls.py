"""The operations the stand-in knows by name, and its bookkeeping of them: call and fault counters
(overall and per flow) and the call log that ``/_standin/stats`` and ``/_standin/calls`` show."""

from __future__ import annotations

import time
from collections import deque

from stripe_standin.wire import JSON

CREATE = "payment_intents.create"
RETRIEVE = "payment_intents.retrieve"
CANCEL = "payment_intents.cancel"
REFUND_CREATE = "refunds.create"
REFUND_RETRIEVE = "refunds.retrieve"
PAYOUT_CREATE = "payouts.create"
PAYOUT_RETRIEVE = "payouts.retrieve"
LIST = "payment_intents.list"
REFUND_LIST = "refunds.list"
PAYOUT_LIST = "payouts.list"
WEBHOOK = "webhook"
SESSION_CREATE = "checkout.sessions.create"
SESSION_RETRIEVE = "checkout.sessions.retrieve"
SESSION_EXPIRE = "checkout.sessions.expire"
SESSION_LIST = "checkout.sessions.list"
API_OPERATIONS: tuple[str, ...] = (
    CREATE, RETRIEVE, CANCEL, REFUND_CREATE, REFUND_RETRIEVE, PAYOUT_CREATE, PAYOUT_RETRIEVE, LIST,
    REFUND_LIST, PAYOUT_LIST, SESSION_CREATE, SESSION_RETRIEVE, SESSION_EXPIRE, SESSION_LIST)
# Connect's operations (stripe_standin/connect_ops.py)
ACCOUNT_OPERATIONS = ("accounts.create", "accounts.retrieve", "accounts.list",
                      "account_links.create", "transfers.create", "transfers.retrieve",
                      "balance.retrieve", "transfers.list", "transfers.reversals.create")
API_OPERATIONS += ACCOUNT_OPERATIONS

Counters = dict[str, dict[str, int]]


def new_counters() -> Counters:
    return {op: {"calls": 0, "faults": 0} for op in (*API_OPERATIONS, WEBHOOK)}


class CallLog:
    """Counters per operation (overall and per flow) and the log of authenticated API calls."""

    def __init__(self) -> None:
        self.stats = new_counters()
        self.flow_stats: dict[str, Counters] = {}
        self.calls: deque[JSON] = deque(maxlen=10_000)

    def count(self, operation: str, flow_id: str | None, *, fault: bool = False) -> None:
        key = "faults" if fault else "calls"
        self.stats[operation][key] += 1
        if flow_id is not None:
            self.flow_stats.setdefault(flow_id, new_counters())[operation][key] += 1

    def reset_stats(self) -> None:
        self.stats = new_counters()
        self.flow_stats.clear()

    def log_call(self, operation: str, key: str | None, flow_id: str | None,
                 request_id: str) -> JSON:
        """Append a call-log entry (its outcome is filled in once the call is answered)."""
        entry: JSON = {"operation": operation, "idempotency_key": key, "flow_id": flow_id,
                       "status_code": None, "replayed": False, "fault": None,
                       "request_id": request_id, "at": round(time.time(), 3)}
        self.calls.append(entry)
        return entry
