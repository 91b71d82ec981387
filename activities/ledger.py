"""Ledger activities: one database transaction each, idempotent through transfer keys."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.refusals import ledger_refused
from contracts.errors import ErrorCode
from contracts.ledger import (
    POST_TRANSFERS,
    RESOLVE_TRANSFERS,
    PostedTransfer,
    PostTransfersRequest,
    ResolveTransfersRequest,
)
from db.ledger import LedgerError, LedgerRace, LedgerRepository

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)
Outcome = list[PostedTransfer] | Exception


class GroupCommit(Generic[R, T]):
    """Natural batching: up to ``max_in_flight`` batches run at once; requests arriving while
    they run queue up, and each finished batch starts the next with everything queued (at most
    ``max_batch``). A request is dispatched at the end of the event-loop turn it arrived in,
    with every request that arrived in the same turn (the waiters one statement woke up
    resubmit together), so a lone request on an idle worker waits for no other; under load,
    concurrent requests share one round trip and one commit.

    ``run`` gets the requests and returns one outcome per request, in order: a result, or the
    exception that request alone gets."""

    def __init__(self, run: Callable[[list[R]], Awaitable[Sequence[T | Exception]]],
                 max_in_flight: int = 2, max_batch: int = 64):
        self._run_batch = run
        self.max_in_flight, self.max_batch = max_in_flight, max_batch
        self._queue: list[tuple[R, asyncio.Future[T | Exception]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._dispatch_soon = False
        self.batches = 0  # statements run so far (requests share them under load)

    async def submit(self, request: R) -> T | Exception:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T | Exception] = loop.create_future()
        self._queue.append((request, future))
        if not self._dispatch_soon:  # once per turn: the turn's other requests join the batch
            self._dispatch_soon = True
            loop.call_soon(self._dispatch_queued)
        return await future

    def _dispatch_queued(self) -> None:
        self._dispatch_soon = False
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue and self._in_flight < self.max_in_flight:
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            self._in_flight += 1
            self.batches += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[R, asyncio.Future[T | Exception]]]) -> None:
        try:
            outcomes: Sequence[T | Exception] = await self._run_batch([r for r, _ in batch])
        except Exception as e:  # every waiter gets it
            outcomes = [e] * len(batch)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        finally:
            self._in_flight -= 1
            self._dispatch()
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():  # a waiter may have been cancelled meanwhile
                future.set_result(outcome)


def _activity_error(e: Exception) -> Exception:
    """A ledger failure as the activity reports it: refusals are final, races and outages are
    retried (the idempotency keys make a retry return the first result)."""
    if isinstance(e, LedgerError):  # a business refusal: retrying cannot change the answer
        return ledger_refused(e)
    if isinstance(e, LedgerRace):
        return ApplicationError(str(e), type=ErrorCode.LEDGER_RETRY.value)
    if isinstance(e, IntegrityError):
        # A constraint fired under a race the locks should have prevented: retry.
        return ApplicationError(f"ledger constraint: {e.orig}", type=ErrorCode.LEDGER_RETRY.value)
    if isinstance(e, DBAPIError):
        return ApplicationError(f"database unavailable: {e.orig}",
                                type=ErrorCode.DB_UNAVAILABLE.value)
    return e


class LedgerActivities:
    """``post_transfers`` is one statement run on an autocommit connection: the statement is
    the transaction, with no BEGIN/COMMIT round trips while the accounts are locked. Concurrent
    posts in this worker are grouped (``GroupCommit``): a batch is one ``ledger_post_many()``
    statement, each request still all-or-nothing with its own outcome. ``resolve_transfers``
    is a regular transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_in_flight: int = 2):
        self.sessions = sessions
        self.autocommit = sessions.kw["bind"].execution_options(isolation_level="AUTOCOMMIT")
        self._account_ids: dict[tuple, int] = {}
        self._posts: GroupCommit[PostTransfersRequest, list[PostedTransfer]] = GroupCommit(
            self._post_batch, max_in_flight=max_in_flight)

    async def _post_batch(self, reqs: list[PostTransfersRequest]) -> list[Outcome]:
        if len(reqs) > 1:
            try:
                async with self.autocommit.connect() as conn:
                    return list(await LedgerRepository(conn, self._account_ids).post_many(reqs))
            except LedgerRace as e:
                # A key twice in the batch or a same-key race: nothing was written; post them
                # one by one, in order, so each gets its own outcome (a repeated key then
                # finds the first one's transfer: a replay, not a race).
                log.info("ledger: batch of %d posted one by one (%s)", len(reqs), e)
                return [await self._post_one(r) for r in reqs]
            except DBAPIError as e:  # a failing statement: each request tries on its own
                log.info("ledger: batch of %d posted one by one (%s)", len(reqs), e)
        return list(await asyncio.gather(*(self._post_one(r) for r in reqs)))

    async def _post_one(self, req: PostTransfersRequest) -> Outcome:
        try:
            async with self.autocommit.connect() as conn:
                return await LedgerRepository(conn, self._account_ids).post(
                    req.tenant_id, req.flow_id, req.transfers, req.pending, req.events)
        except (LedgerError, LedgerRace, DBAPIError) as e:
            return e

    async def _transaction(self, work: Callable[[LedgerRepository], Awaitable[T]]) -> T:
        try:
            async with self.sessions.begin() as session:
                return await work(LedgerRepository(session, self._account_ids))
        except (LedgerError, LedgerRace, DBAPIError) as e:
            raise _activity_error(e) from e

    @activity.defn(name=POST_TRANSFERS)
    async def post_transfers(self, req: PostTransfersRequest) -> list[PostedTransfer]:
        outcome = await self._posts.submit(req)
        if isinstance(outcome, Exception):
            error = _activity_error(outcome)
            if error is outcome:
                raise outcome
            raise error from outcome
        posted = outcome
        written = sum(1 for t in posted if not t.replayed)
        if written and activity.in_activity():
            activity.metric_meter().create_counter(
                "walletflow_ledger_transfers", "Ledger transfers written").add(
                written, {"state": "pending" if req.pending else "posted"})
        if log.isEnabledFor(logging.INFO):
            log.info("ledger: %d transfer(s) %s", len(posted),
                     "held" if req.pending else "posted",
                     extra={"transfers": [f"{t.idempotency_key}={t.transfer_id}"
                                          f"{' (replayed)' if t.replayed else ''}"
                                          for t in posted]})
        return posted

    @activity.defn(name=RESOLVE_TRANSFERS)
    async def resolve_transfers(self, req: ResolveTransfersRequest) -> list[PostedTransfer]:
        async def work(repo: LedgerRepository) -> list[PostedTransfer]:
            return [await repo.resolve(req.tenant_id, key, req.outcome) for key in req.keys]

        return await self._transaction(work)
