"""Named retry and timeout policies: the one place they are defined.

The top-up creates its gateway payment and writes the ledger as *local* activities: they
execute in the worker that runs the workflow task, with no extra round trip through the Temporal
server (measured in bench/). They are retried with the same policies and stay idempotent (Stripe
idempotency and ledger keys from the flow id), so a re-execution after a worker crash creates or
moves nothing twice. A local activity's failure reaches the workflow as the activity's own
ApplicationError (not wrapped in an ActivityError)."""

from __future__ import annotations

from datetime import timedelta
from typing import TypedDict

from temporalio.common import RetryPolicy

from contracts.errors import ErrorCode


class ActivityPolicy(TypedDict, total=False):
    """The options a named policy sets; ``**policy`` type-checks against ``execute_activity``
    and ``execute_local_activity``."""

    start_to_close_timeout: timedelta
    schedule_to_close_timeout: timedelta
    retry_policy: RetryPolicy


# Short database work (one ledger transaction). Retried quickly and for a bounded time: a
# transaction either commits once or rolls back, and its idempotency keys make retries safe.
# Also the policy of the flows' local database steps (workflows/steps.py): its longest backoff
# (10 s) stays under the SDK's local_retry_threshold (1 minute), so a local step's retries run
# in the worker, inside a heartbeated workflow task, with no timer round trip.
LEDGER: ActivityPolicy = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=10),
        non_retryable_error_types=[ErrorCode.INSUFFICIENT_FUNDS.value,
                                   ErrorCode.LEDGER_CONFLICT.value,
                                   ErrorCode.ACCOUNT_MISSING.value],
    ),
}

# Payment gateway calls. Each attempt has its own timeout; the whole retry window stays well
# inside Stripe's 24 h idempotency-key lifetime, so every retry reuses the same key safely.
GATEWAY: ActivityPolicy = {
    "start_to_close_timeout": timedelta(seconds=15),
    "schedule_to_close_timeout": timedelta(hours=6),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(milliseconds=500),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=2),
        non_retryable_error_types=[ErrorCode.GATEWAY_REFUSED.value],
    ),
}

# Outbound webhooks: 15 s per attempt (the endpoint's own timeout), backoff from 1 s doubling
# up to an hour, for a day; a 410 (endpoint gone) or a disabled endpoint is final.
WEBHOOK_DELIVERY: ActivityPolicy = {
    "start_to_close_timeout": timedelta(seconds=20),
    "schedule_to_close_timeout": timedelta(hours=24),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(hours=1),
        non_retryable_error_types=[ErrorCode.ENDPOINT_GONE.value,
                                   ErrorCode.ENDPOINT_DISABLED.value],
    ),
}

# The janitor's sweeps (reconcile, signal, remove): bounded well inside the schedule's
# interval; the next run starts afresh.
JANITOR: ActivityPolicy = {
    "start_to_close_timeout": timedelta(minutes=2),
    "schedule_to_close_timeout": timedelta(minutes=4),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=[ErrorCode.GATEWAY_REFUSED.value],
    ),
}
