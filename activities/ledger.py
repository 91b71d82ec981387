"""Ledger activities: one database transaction each, idempotent through transfer keys."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.ledger import LedgerError, LedgerRace, LedgerRepository
from workflows.contracts import (
    POST_TRANSFERS,
    RESOLVE_TRANSFERS,
    PostedTransfer,
    PostTransfersRequest,
    ResolveTransfersRequest,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


class LedgerActivities:
    """``post_transfers`` is one statement (``ledger_post()``), run on an autocommit
    connection: the statement is the transaction, with no BEGIN/COMMIT round trips while the
    accounts are locked. ``resolve_transfers`` is a regular transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions
        self.autocommit = sessions.kw["bind"].execution_options(isolation_level="AUTOCOMMIT")
        self._account_ids: dict[tuple, int] = {}

    async def _transaction(self, work: Callable[[LedgerRepository], Awaitable[T]],
                           single_statement: bool = False) -> T:
        try:
            if single_statement:
                async with self.autocommit.connect() as conn:
                    return await work(LedgerRepository(conn, self._account_ids))
            async with self.sessions.begin() as session:
                return await work(LedgerRepository(session, self._account_ids))
        except LedgerError as e:
            # A business refusal: retrying cannot change the answer.
            raise ApplicationError(str(e), type=e.code, non_retryable=True) from e
        except LedgerRace as e:
            raise ApplicationError(str(e), type="ledger_retry") from e
        except IntegrityError as e:
            # A constraint fired under a race the locks should have prevented: retry; the
            # idempotency key makes the retry return the first result.
            raise ApplicationError(f"ledger constraint: {e.orig}", type="ledger_retry") from e
        except DBAPIError as e:
            raise ApplicationError(f"database unavailable: {e.orig}", type="db_unavailable") from e

    @activity.defn(name=POST_TRANSFERS)
    async def post_transfers(self, req: PostTransfersRequest) -> list[PostedTransfer]:
        posted = await self._transaction(
            lambda repo: repo.post(req.tenant_id, req.flow_id, req.transfers, req.pending,
                                   req.events), single_statement=True)
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
