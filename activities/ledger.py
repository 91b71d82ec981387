"""Ledger activities: one database transaction each, idempotent through transfer keys."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.ledger import LedgerError, LedgerRace, LedgerRepository
from workflows.contracts import POST_TRANSFERS, PostedTransfer, PostTransfersRequest


class LedgerActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions
        self._account_ids: dict[tuple, int] = {}

    @activity.defn(name=POST_TRANSFERS)
    async def post_transfers(self, req: PostTransfersRequest) -> list[PostedTransfer]:
        try:
            async with self.sessions.begin() as session:
                repo = LedgerRepository(session, self._account_ids)
                return await repo.post(req.tenant_id, req.flow_id, req.transfers)
        except LedgerError as e:
            # A business refusal: retrying cannot change the answer.
            raise ApplicationError(str(e), type=e.code, non_retryable=True) from e
        except LedgerRace as e:
            raise ApplicationError(str(e), type="ledger_retry") from e
        except IntegrityError as e:
            # A concurrent writer won a race the locks should have prevented, or a constraint
            # fired: retry; the idempotency key makes the retry return the first result.
            raise ApplicationError(f"ledger constraint: {e.orig}", type="ledger_retry") from e
        except DBAPIError as e:
            raise ApplicationError(f"database unavailable: {e.orig}", type="db_unavailable") from e
