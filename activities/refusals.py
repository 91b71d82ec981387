"""Business refusals as activities report them: a final (non-retryable) ``ApplicationError``
whose type is the ``ErrorCode`` value and whose message is the human detail. Anything else an
activity raises (a database outage, a lost race) stays retryable."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from contracts.errors import ErrorCode
from db.ledger import LedgerError


def refused(code: ErrorCode, detail: str) -> ApplicationError:
    return ApplicationError(detail, type=code.value, non_retryable=True)


def ledger_refused(e: LedgerError) -> ApplicationError:
    """The ledger's refusal (insufficient funds, a conflict, a missing account), typed."""
    return refused(ErrorCode(e.code), str(e))
