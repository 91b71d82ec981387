"""The one path that starts a flow and answers with its outcome.

``start_flow`` claims the tenant-scoped Idempotency-Key (IETF draft semantics: the same key
with the same request returns the same flow and the same answer; the same key with a different
request is 422 ``idempotency_key_reused``; a missing key is 400; the same key while its first
request is still starting the flow is 409 ``idempotency_in_progress`` with ``Retry-After``) —
before any business validation, so a stored answer is replayed whatever changed since. A new
key then runs the endpoint's ``validate``, writes the rows the flow needs in the same
transaction, commits, starts the workflow (update-with-start, or start and wait for its
result), waits for the outcome and maps it to the HTTP answer. A start that fails is undone
(the claim and its rows removed) unless the workflow exists, so nothing is left behind. A
refusal's typed outcome (``error_code`` + detail) becomes a problem body through the one table
in ``api/errors.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import faultpoints
from api.errors import PROBLEM_JSON, ProblemError, problem_body
from api.flows import refusal_of
from contracts.errors import ErrorCode as E
from db.flows import FlowRepository
from db.tenants import Principal
from observability import bind
from settings import Settings
from workflows.console import start_options

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# How long a request waits for the flow's first answer before answering 202 (the flow goes on).
WAIT_SECONDS = 20.0
# How long a request holds its key while it starts the flow; a request that died (its process
# killed) frees the key after this.
LEASE_SECONDS = WAIT_SECONDS + 10.0
# What a concurrent duplicate is told to wait before asking again.
RETRY_AFTER_SECONDS = 1
log = logging.getLogger(__name__)


def idempotency_key(request: Request) -> str:
    key = request.headers.get("idempotency-key")
    if key is None:
        raise ProblemError(E.IDEMPOTENCY_KEY_MISSING,
                           "flow-starting requests need an Idempotency-Key header")
    key = key.strip().strip('"')
    if not KEY_PATTERN.match(key):
        raise ProblemError(E.IDEMPOTENCY_KEY_INVALID,
                           "Idempotency-Key must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return key


def flow_id_for(principal: Principal, kind: str, key: str) -> str:
    return f"{principal.tenant_slug}:{kind}:{key}"


def fingerprint(request: Request, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.url.path}\n{canonical}".encode()).hexdigest()


async def commit_before_start(session: AsyncSession) -> None:
    """Make the request's writes durable before a workflow that reads them starts: the one
    commit besides the request's own at its end (``api/deps.py`` ``db_session``)."""
    await session.commit()


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    final: bool = True  # stored and replayed for every later request with the same key


# -- typed outcomes ---------------------------------------------------------------------------


def outcome_code(error_code: str | None, fallback: E) -> E:
    """The ErrorCode of a refused or failed flow (its ``error_code``; ``fallback`` when it names
    none this API knows)."""
    return E(error_code) if error_code is not None and error_code in set(E) else fallback


def refusal(error_code: str | None, error: str | None, fallback: E, **extra: Any) -> Answer:
    """A flow's typed refusal as the final problem answer."""
    code = outcome_code(error_code, fallback)
    body = problem_body(code, error or code.value.replace("_", " "), **extra)
    return Answer(body["status"], body)


async def flow_refusal(temporal: Client, flow_id: str, fallback: E, **extra: Any) -> Answer:
    """A flow that answered its start with a refusal (state only), as the final problem answer:
    the code and detail the flow names itself (``api.flows.refusal_of``), else ``fallback``."""
    code, error = await refusal_of(temporal, flow_id)
    return refusal(code, error, fallback, flow_id=flow_id, **extra)


# -- starting ---------------------------------------------------------------------------------


@dataclass
class FlowStart:
    """What a flow-starting endpoint hands to ``start_flow``."""

    kind: str
    user_id: str | None
    request: Any  # the request's content: fingerprinted with the Idempotency-Key
    workflow: Any  # the workflow's run method
    make_input: Callable[[str], Any]  # flow id → the workflow's input
    answer: Callable[[str, Any], Awaitable[Answer]]  # (flow id, outcome) → the answer
    view: Callable[[str, str], dict[str, Any]]  # (flow id, state) → the body while it runs
    update: Any = None  # the update that reports the outcome; None: the workflow's result
    update_id: str = "outcome"
    pending_state: str = "processing"  # reported when the request stops waiting
    update_failed: E | None = None  # a failed update is this refusal (else: the flow closed)
    flow_id: str | None = None  # the business object's own id (an order is paid once)
    record: Callable[[str], Awaitable[None]] | None = None  # rows the flow needs (flow id)
    # The business checks of a new request (balance, what is left to refund, …): run only for a
    # key with no stored answer, so a replay answers what the first request was answered.
    validate: Callable[[], Awaitable[None]] | None = None


@dataclass
class FlowStarter:
    """The request's side of ``start_flow``."""

    request: Request
    session: AsyncSession
    principal: Principal
    temporal: Client
    settings: Settings


async def start_flow(ctx: FlowStarter, spec: FlowStart) -> JSONResponse:
    """Claim the key; replay a stored answer, else validate, start the flow and answer with its
    outcome. A final answer is stored and replayed for every later request with the same key."""
    key = idempotency_key(ctx.request)
    digest = fingerprint(ctx.request, spec.request)
    flows = FlowRepository(ctx.session)
    row = await flows.claim(ctx.principal.tenant_id, key,
                            spec.flow_id or flow_id_for(ctx.principal, spec.kind, key),
                            spec.kind, spec.user_id, digest, LEASE_SECONDS)
    bind(flow_id=row["flow_id"] if row else spec.flow_id)
    replayed = await _stored(flows, ctx.principal, key, digest, spec, row)
    if replayed is not None:
        return replayed
    assert row is not None
    if row["claimed"] and spec.validate is not None:
        await spec.validate()  # a refusal rolls the claim back (api/deps.py db_session)
    if spec.record is not None:
        await spec.record(row["flow_id"])
    await commit_before_start(ctx.session)
    faultpoints.reached("api:after-claim", flow_id=row["flow_id"])  # tests/test_crash_sweep.py
    try:
        answer = await _run(ctx, spec, row["flow_id"])
    except Exception as e:
        await _abandon(ctx, key, row["flow_id"], e)
        raise
    if answer.final:
        await flows.store_response(ctx.principal.tenant_id, key, answer.status, answer.body)
    else:
        await flows.unlock(ctx.principal.tenant_id, key)
    media = PROBLEM_JSON if answer.status >= 400 else "application/json"
    return JSONResponse(answer.body, status_code=answer.status, media_type=media)


async def _stored(flows: FlowRepository, principal: Principal, key: str, digest: str,
                  spec: FlowStart, row: dict[str, Any] | None) -> JSONResponse | None:
    """The answer a key already has (a replay, or a refusal of its reuse); None when this
    request goes on to start (or resume) the flow."""
    if row is None:
        raise ProblemError(E.FLOW_EXISTS, "this flow was already started under another "
                           "Idempotency-Key", flow_id=spec.flow_id)
    if row["request_hash"] != digest or row["kind"] != spec.kind:
        raise ProblemError(E.IDEMPOTENCY_KEY_REUSED,
                           "this Idempotency-Key was already used with a different request",
                           flow_id=row["flow_id"])
    if row["response"] is not None:
        return JSONResponse(row["response"], status_code=row["status_code"],
                            media_type=PROBLEM_JSON if row["status_code"] >= 400
                            else "application/json",
                            headers={"Idempotent-Replayed": "true"})
    if row["claimed"] or (not row["in_flight"]
                          and await flows.take_over(principal.tenant_id, key, LEASE_SECONDS)):
        return None
    raise ProblemError(E.IDEMPOTENCY_IN_PROGRESS,
                       "a request with this Idempotency-Key is still being processed; retry "
                       "after a moment for its answer", flow_id=row["flow_id"],
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def _abandon(ctx: FlowStarter, key: str, flow_id: str, error: Exception) -> None:
    """After a failed start: remove the claim and its rows when the workflow never started
    (a retry starts afresh), else just end the lease (a retry resumes the flow). Best effort:
    the request answers with ``error`` either way."""
    try:
        never_started = _not_sent(error) or await _workflow_exists(ctx.temporal, flow_id) is False
        flows = FlowRepository(ctx.session)
        if never_started:
            await flows.release(ctx.principal.tenant_id, key, flow_id)
        else:
            await flows.unlock(ctx.principal.tenant_id, key)
        await ctx.session.commit()
    except Exception:
        log.warning("could not undo the claim of %s", flow_id, exc_info=True)


def _not_sent(error: Exception) -> bool:
    """The Temporal client could not even connect: the start was never sent."""
    return isinstance(error, RuntimeError) and str(error).startswith("Failed client connect")


async def _workflow_exists(temporal: Client, flow_id: str) -> bool | None:
    """Whether Temporal knows the workflow; None when it cannot tell now."""
    try:
        await asyncio.wait_for(temporal.get_workflow_handle(flow_id).describe(
            rpc_timeout=timedelta(seconds=2)), 3)
    except RPCError as e:
        return False if e.status == RPCStatusCode.NOT_FOUND else None
    except Exception:
        return None
    return True


async def _run(ctx: FlowStarter, spec: FlowStart, flow_id: str) -> Answer:
    try:
        outcome = await asyncio.wait_for(_start(ctx, spec, flow_id), WAIT_SECONDS)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # Slow (e.g. the gateway is down); the flow goes on. Not final: a retry asks again.
        return Answer(202, spec.view(flow_id, spec.pending_state), final=False)
    except WorkflowUpdateFailedError as e:
        if spec.update_failed is None:
            return Answer(200, spec.view(flow_id, "closed"), final=False)
        cause = getattr(e.cause, "cause", None) or e.cause
        code = cause.type if isinstance(cause, ApplicationError) else None
        return refusal(code, str(cause or e), spec.update_failed, flow_id=flow_id)
    except WorkflowAlreadyStartedError:
        # The flow already finished and its first answer was never stored: report it.
        return Answer(200, spec.view(flow_id, "closed"), final=False)
    return await spec.answer(flow_id, outcome)


async def _start(ctx: FlowStarter, spec: FlowStart, flow_id: str) -> Any:
    """Start the workflow (at most once per flow id) and wait for its outcome."""
    inp = spec.make_input(flow_id)
    queue = ctx.settings.temporal_task_queue
    # search attributes, static summary and details: the Temporal UI as an admin's console
    console = start_options(spec.kind, ctx.principal.tenant_slug, inp,
                            via=f"API key `{ctx.principal.actor}`")
    if spec.update is None:
        handle = await ctx.temporal.start_workflow(
            spec.workflow, inp, id=flow_id, task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, **console)
        return await handle.result()
    operation = WithStartWorkflowOperation(
        spec.workflow, inp, id=flow_id, task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, **console)
    try:
        return await ctx.temporal.execute_update_with_start_workflow(
            spec.update, start_workflow_operation=operation, id=spec.update_id)
    finally:
        _retrieve_start(operation)


def _retrieve_start(operation: WithStartWorkflowOperation[Any, Any]) -> None:
    """The start's own future holds the error of a start that did not complete — the
    CancelledError of a request that stopped waiting (202), say: retrieve it here, or asyncio
    logs "Future exception was never retrieved" for a normal answer."""
    started = getattr(operation, "_workflow_handle", None)
    if isinstance(started, asyncio.Future) and started.done() and not started.cancelled():
        started.exception()
