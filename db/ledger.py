"""The ledger repository: its writes (its reads are in db/ledger_reads.py, inherited).

It never commits: the caller (an activity, the API request) owns the transaction. Every write
locks the accounts it touches in ascending id order, so concurrent flows on one wallet
serialise without deadlocks; the database constraints (unique idempotency key, non-negative
user accounts, same-tenant same-currency foreign keys, immutable transfers) are the backstop.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from contracts.errors import ErrorCode
from contracts.events import EventOut
from contracts.ledger import AccountRef, PostedTransfer, PostTransfersRequest, TransferRequest
from contracts.money import Money, MoneyError
from db.ledger_reads import USER_KINDS as USER_KINDS  # re-exported: callers import it here
from db.ledger_reads import Balance as Balance
from db.ledger_reads import LedgerReads

# Hot system accounts split into shards (accounts "<owner>#<n>"): every top-up, card order and
# card refund moves money through the gateway's clearing account, and one row would serialise
# them all. A transfer's shard follows from its idempotency key, so a retry finds the same one;
# reads add the shards up. Only accounts that may go negative can be sharded.
SHARDED_KINDS = {"gateway_clearing": 16}
_FUNDS = re.compile(r"available (-?\d+) < (\d+) (\w+)")


class LedgerError(Exception):
    """A business refusal: retrying cannot change it. ``code`` is its ``ErrorCode`` value."""

    code: str = ErrorCode.LEDGER_CONFLICT.value


class InsufficientFunds(LedgerError):
    code = ErrorCode.INSUFFICIENT_FUNDS.value


class LedgerConflict(LedgerError):
    """An idempotency key reused for a different movement, or an impossible state change."""

    code = ErrorCode.LEDGER_CONFLICT.value


class LedgerRace(Exception):
    """A concurrent writer committed the same idempotency key while this one waited: nothing was
    written; retry and the key's first result is returned. Retryable, so not a LedgerError."""


class AccountMissing(LedgerError):
    code = ErrorCode.ACCOUNT_MISSING.value


_LOCK = text(
    "SELECT id, kind, posted, pending_in, pending_out FROM accounts "
    "WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"
)
# Several independent requests in one statement and one commit (migration 0009).
_POST_MANY = text(
    "SELECT request, idempotency_key, transfer_id, state, replayed, problem FROM "
    "ledger_post_many(CAST(:tenants AS uuid[]), :flows, CAST(:pending AS boolean[]), "
    "CAST(:ends AS int[]), CAST(:keys AS text[]), CAST(:debits AS bigint[]), "
    "CAST(:credits AS bigint[]), CAST(:amounts AS bigint[]), CAST(:currencies AS text[]), "
    "CAST(:kinds AS text[]), CAST(:metas AS text[]), CAST(:events AS jsonb))"
)
_COLUMNS = ("keys", "debits", "credits", "amounts", "currencies", "kinds", "metas")
_APPLY = text(
    "UPDATE accounts AS a SET posted = a.posted + v.dp, pending_in = a.pending_in + v.dpi, "
    "pending_out = a.pending_out + v.dpo "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:dp AS bigint[]), CAST(:dpi AS bigint[]), "
    "CAST(:dpo AS bigint[])) AS v(id, dp, dpi, dpo) WHERE a.id = v.id"
)


class LedgerRepository(LedgerReads):
    def __init__(self, session: AsyncSession | AsyncConnection,
                 account_ids: dict[tuple, int] | None = None):
        """``session``: a session, or a connection (the worker's autocommit single-statement
        path); either way the caller owns the transaction."""
        self.session = session
        # Accounts are never deleted, so (tenant, kind, owner, currency) → id can be cached.
        self._ids = account_ids if account_ids is not None else {}

    # -- accounts ---------------------------------------------------------------------------

    async def account_id(self, tenant_id: str, ref: AccountRef, create: bool = True) -> int:
        key = (tenant_id, ref.kind, ref.owner_id, ref.currency)
        if key in self._ids:
            return self._ids[key]
        params = {"t": tenant_id, "k": ref.kind, "o": ref.owner_id, "c": ref.currency}
        row = (
            await self.session.execute(
                text("SELECT id FROM accounts WHERE tenant_id = :t AND kind = :k "
                     "AND owner_id = :o AND currency = :c"),
                params,
            )
        ).first()
        if row is None:
            if not create:
                raise AccountMissing(f"no {ref.kind} account for {ref.owner_id} in {ref.currency}")
            row = (
                await self.session.execute(
                    text("INSERT INTO accounts (tenant_id, kind, owner_id, currency) "
                         "VALUES (:t, :k, :o, :c) ON CONFLICT DO NOTHING RETURNING id"),
                    params,
                )
            ).first() or (
                await self.session.execute(
                    text("SELECT id FROM accounts WHERE tenant_id = :t AND kind = :k "
                         "AND owner_id = :o AND currency = :c"),
                    params,
                )
            ).one()
            return row[0]  # not cached until it is known to be committed
        self._ids[key] = row[0]
        return row[0]

    # -- writes -----------------------------------------------------------------------------

    async def lock(self, tenant_id: str, refs: list[AccountRef]) -> None:
        """Lock several accounts up front (ascending id) for a transaction that makes more than
        one ledger call, so its later calls never take locks out of order."""
        if any(r.kind in SHARDED_KINDS for r in refs):
            raise ValueError("sharded accounts are locked by post(), by transfer key")
        await self._lock({await self.account_id(tenant_id, r) for r in refs})

    async def post(self, tenant_id: str, flow_id: str, transfers: list[TransferRequest],
                   pending: bool = False, events: Sequence[EventOut] = ()
                   ) -> list[PostedTransfer]:
        """Write transfers (posted, or pending holds) all-or-nothing, in one round trip: a
        batch of one request for ``ledger_post_many()`` (migration 0014), so one function in
        the database decides every ledger write.

        A key already written returns the first result and moves nothing; the same key with a
        different movement raises LedgerConflict; a user account without enough available
        funds raises InsufficientFunds. Refusals write nothing and leave the transaction usable.
        ``events`` are recorded in the outbox with the transfers (once per event key).
        """
        request = PostTransfersRequest(tenant_id, flow_id, transfers, pending, list(events))
        outcome = (await self.post_many([request]))[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def post_many(self, requests: Sequence[PostTransfersRequest]
                        ) -> list[list[PostedTransfer] | LedgerError | LedgerRace]:
        """Several independent ``post`` requests in one statement (``ledger_post_many()``,
        migration 0009), each all-or-nothing with its own outcome, in the order given: its
        transfers, or the refusal it alone gets. A same-key race among them raises LedgerRace
        for the whole batch (nothing written); post them one by one then."""
        outcomes: list[list[PostedTransfer] | LedgerError | LedgerRace] = []
        batch: dict[str, list[Any]] = {k: [] for k in (
            "tenants", "flows", "pending", "ends", "events", *_COLUMNS)}
        sent: list[int] = []  # positions of the requests in the statement
        for req in requests:
            try:
                rows = await self._rows(req.tenant_id, req.transfers, req.events)
            except LedgerError as e:
                outcomes.append(e)
                continue
            outcomes.append([])
            sent.append(len(outcomes) - 1)
            for k in _COLUMNS:
                batch[k].extend(rows[k])
            batch["tenants"].append(req.tenant_id)
            batch["flows"].append(req.flow_id)
            batch["pending"].append(req.pending)
            batch["ends"].append(len(batch["keys"]))
            batch["events"].append(_events(req.events))
        if not sent:
            return outcomes
        conn = await self._connection()
        try:
            result = (await conn.execute(_POST_MANY, {
                **batch, "events": json.dumps(batch["events"])})).all()
        except DBAPIError as e:
            if sqlstate(e) == "WL001":
                raise LedgerRace("a concurrent writer used one of the batch's keys") from e
            raise
        by_request: dict[int, list[Any]] = {}
        for r in result:
            by_request.setdefault(r.request, []).append(r)
        for n, position in enumerate(sent, start=1):
            try:
                outcomes[position] = _outcome(by_request.get(n, []))
            except (LedgerError, LedgerRace) as e:
                outcomes[position] = e
        return outcomes

    async def _rows(self, tenant_id: str, transfers: Sequence[TransferRequest],
                    events: Sequence[EventOut]) -> dict[str, list[Any]]:
        """The transfers as the parallel arrays ``ledger_post_many()`` takes (account ids
        resolved, sharded accounts picked by key)."""
        if any(e.tenant_id != tenant_id for e in events):
            raise LedgerConflict("an event for another tenant")
        keys = [t.idempotency_key for t in transfers]
        if len(set(keys)) < len(keys):  # can never be written: refused, not a race to retry
            twice = sorted({k for k in keys if keys.count(k) > 1})
            raise LedgerConflict(f"idempotency key {', '.join(twice)} repeated in one request")
        rows: dict[str, list[Any]] = {k: [] for k in _COLUMNS}
        for t in transfers:
            if (t.amount <= 0 or t.debit == t.credit or t.debit.currency != t.currency
                    or t.credit.currency != t.currency):
                raise LedgerConflict(f"malformed transfer {t.idempotency_key}")
            debit, credit = (_shard(t.debit, t.idempotency_key),
                             _shard(t.credit, t.idempotency_key))
            for k, v in (("keys", t.idempotency_key),
                         ("debits", await self.account_id(tenant_id, debit)),
                         ("credits", await self.account_id(tenant_id, credit)),
                         ("amounts", t.amount), ("currencies", t.currency), ("kinds", t.kind),
                         ("metas", json.dumps(t.metadata))):
                rows[k].append(v)
        return rows

    async def _connection(self) -> AsyncConnection:
        return (self.session if isinstance(self.session, AsyncConnection)
                else await self.session.connection())  # Core execution: the hot path

    async def resolve(self, tenant_id: str, idempotency_key: str, outcome: str) -> PostedTransfer:
        """Post or void a pending transfer (a hold). Resolving it again the same way returns the
        first result; the opposite resolution raises LedgerConflict."""
        if outcome not in ("posted", "voided"):
            raise ValueError(outcome)
        row = (
            await self.session.execute(
                text("SELECT id, debit_account_id, credit_account_id, amount, state "
                     "FROM transfers WHERE tenant_id = :t AND idempotency_key = :k"),
                {"t": tenant_id, "k": idempotency_key},
            )
        ).first()
        if row is None:
            raise LedgerConflict(f"no pending transfer {idempotency_key}")
        accounts = await self._lock({row.debit_account_id, row.credit_account_id})
        state = (
            await self.session.execute(
                text("SELECT state FROM transfers WHERE id = :id"), {"id": row.id}
            )
        ).scalar_one()
        if state == outcome:
            return PostedTransfer(row.id, idempotency_key, state, True)
        if state != "pending":
            raise LedgerConflict(f"transfer {idempotency_key} is already {state}")
        d, c = accounts[row.debit_account_id], accounts[row.credit_account_id]
        d["pending_out"] -= row.amount
        c["pending_in"] -= row.amount
        if outcome == "posted":
            d["posted"] -= row.amount
            c["posted"] += row.amount
        await self.session.execute(
            text("UPDATE transfers SET state = :s, resolved_at = now(), "
                 "debit_posted_after = :dpa, credit_posted_after = :cpa WHERE id = :id"),
            {"s": outcome, "id": row.id,
             "dpa": d["posted"] if outcome == "posted" else None,
             "cpa": c["posted"] if outcome == "posted" else None},
        )
        await self._apply(accounts)
        return PostedTransfer(row.id, idempotency_key, outcome, False)

    async def _lock(self, ids: set[int]) -> dict[int, dict[str, Any]]:
        rows = await self.session.execute(_LOCK, {"ids": sorted(ids)})
        accounts = {r.id: {"kind": r.kind, "posted": r.posted, "pending_in": r.pending_in,
                           "pending_out": r.pending_out, "_orig": (r.posted, r.pending_in,
                                                                     r.pending_out)}
                    for r in rows}
        if len(accounts) != len(ids):  # created by a transaction not committed (yet)
            raise LedgerRace(f"accounts {sorted(ids - accounts.keys())} are not visible yet")
        return accounts

    async def _apply(self, accounts: dict[int, dict[str, Any]]) -> None:
        changed = self._deltas(accounts)
        if changed["ids"]:
            await self.session.execute(_APPLY, changed)

    @staticmethod
    def _deltas(accounts: dict[int, dict[str, Any]]) -> dict[str, list[int]]:
        changed: dict[str, list[int]] = {"ids": [], "dp": [], "dpi": [], "dpo": []}
        for account_id, a in accounts.items():
            p, pi, po = a["_orig"]
            delta = (a["posted"] - p, a["pending_in"] - pi, a["pending_out"] - po)
            if any(delta):
                changed["ids"].append(account_id)
                changed["dp"].append(delta[0])
                changed["dpi"].append(delta[1])
                changed["dpo"].append(delta[2])
        return changed


def _events(events: Sequence[EventOut]) -> list[dict[str, Any]]:
    return [{"key": e.key, "type": e.type, "payload": e.payload} for e in events]


def _outcome(result: Sequence[Any]) -> list[PostedTransfer]:
    """One request's rows of ``ledger_post_many()`` as transfers, or the refusal they carry,
    raised."""
    problem = result[0].problem if result else None
    if problem:
        code, _, detail = problem.partition(": ")
        if code == "insufficient_funds":
            raise InsufficientFunds(_decimal_amounts(detail))
        if code == "conflict":
            raise LedgerConflict(detail)
        raise LedgerRace(detail)
    return [PostedTransfer(r.transfer_id, r.idempotency_key, r.state, r.replayed)
            for r in result]


def _decimal_amounts(detail: str) -> str:
    """``ledger_post_many()``'s "available 1000 < 1100 EUR" (minor units) as a human message with
    decimal amounts: "available 10.00 EUR, needed 11.00 EUR"."""
    found = _FUNDS.fullmatch(detail)
    if found is None:
        return detail
    available, needed, currency = int(found[1]), int(found[2]), found[3]
    try:
        return f"available {Money(available, currency)}, needed {Money(needed, currency)}"
    except MoneyError:
        return detail


def sqlstate(e: DBAPIError) -> str | None:
    """The PostgreSQL error code behind a driver error (e.g. ``42P01``, ``WL001``)."""
    orig = e.orig
    return getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None),
                                                      "sqlstate", None)


def _shard(ref: AccountRef, key: str) -> AccountRef:
    """The physical account a transfer with this key uses for ``ref``."""
    shards = SHARDED_KINDS.get(ref.kind)
    if not shards:
        return ref
    return AccountRef(ref.kind, f"{ref.owner_id}#{zlib.crc32(key.encode()) % shards}",
                      ref.currency)
