"""The double-entry ledger against the real PostgreSQL: idempotency, holds, locking, and the
constraints the database itself enforces."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.ledger import LedgerActivities
from contracts.events import EventOut
from contracts.ledger import AccountRef, PostTransfersRequest, TransferRequest
from db.engine import create_engine, session_factory
from db.ledger import InsufficientFunds, LedgerConflict, LedgerRepository
from tests.support import Tenant


def clearing(cur: str = "EUR") -> AccountRef:
    return AccountRef("gateway_clearing", "stripe", cur)


def wallet(user: str = "user-1", cur: str = "EUR") -> AccountRef:
    return AccountRef("user_wallet", user, cur)


def revenue(cur: str = "EUR") -> AccountRef:
    return AccountRef("merchant_revenue", "tenant", cur)


async def post(sessions: async_sessionmaker[AsyncSession], tenant: Tenant, *transfers:
               TransferRequest, pending: bool = False) -> list:
    async with sessions.begin() as session:
        return await LedgerRepository(session).post(tenant.id, "flow-test", list(transfers),
                                                    pending=pending)


async def balance(sessions: async_sessionmaker[AsyncSession], tenant: Tenant,
                  user: str = "user-1", cur: str = "EUR") -> tuple[int, int, int, int]:
    async with sessions() as session:
        for b in await LedgerRepository(session).balances(tenant.id, user):
            if b.currency == cur and b.kind == "user_wallet":
                return b.posted, b.pending_in, b.pending_out, b.available
    return 0, 0, 0, 0


async def test_posting_the_same_key_twice_moves_money_once(sessions, tenant: Tenant) -> None:
    t = TransferRequest("f1:credit", clearing(), wallet(), 5000, "EUR", "topup")
    first = await post(sessions, tenant, t)
    again = await post(sessions, tenant, t)
    assert first[0].replayed is False and again[0].replayed is True
    assert again[0].transfer_id == first[0].transfer_id
    assert await balance(sessions, tenant) == (5000, 0, 0, 5000)


async def test_same_key_for_a_different_movement_is_a_conflict(sessions, tenant: Tenant) -> None:
    await post(sessions, tenant, TransferRequest("f2:credit", clearing(), wallet(), 100, "EUR",
                                                 "topup"))
    with pytest.raises(LedgerConflict):
        await post(sessions, tenant, TransferRequest("f2:credit", clearing(), wallet(), 999,
                                                     "EUR", "topup"))
    assert await balance(sessions, tenant) == (100, 0, 0, 100)


async def test_overdraft_is_refused_and_writes_nothing(sessions, tenant: Tenant) -> None:
    await post(sessions, tenant, TransferRequest("f3:credit", clearing(), wallet(), 1000, "EUR",
                                                 "topup"))
    with pytest.raises(InsufficientFunds):
        await post(sessions, tenant,
                   TransferRequest("f3:a", wallet(), revenue(), 600, "EUR", "order"),
                   TransferRequest("f3:b", wallet(), revenue(), 600, "EUR", "order"))
    assert await balance(sessions, tenant) == (1000, 0, 0, 1000)
    async with sessions() as s:
        n = (await s.execute(text("SELECT count(*) FROM transfers WHERE tenant_id = :t"),
                             {"t": tenant.id})).scalar_one()
    assert n == 1  # the all-or-nothing batch left no row


async def test_holds_reduce_available_then_post_or_void(sessions, tenant: Tenant) -> None:
    await post(sessions, tenant, TransferRequest("f4:credit", clearing(), wallet(), 1000, "EUR",
                                                 "topup"))
    await post(sessions, tenant, TransferRequest("f4:hold1", wallet(), revenue(), 300, "EUR",
                                                 "order"), pending=True)
    await post(sessions, tenant, TransferRequest("f4:hold2", wallet(), revenue(), 200, "EUR",
                                                 "order"), pending=True)
    assert await balance(sessions, tenant) == (1000, 0, 500, 500)
    with pytest.raises(InsufficientFunds):  # only 500 available
        await post(sessions, tenant, TransferRequest("f4:hold3", wallet(), revenue(), 501, "EUR",
                                                     "order"), pending=True)
    async with sessions.begin() as s:
        first = await LedgerRepository(s).resolve(tenant.id, "f4:hold1", "posted")
    async with sessions.begin() as s:
        again = await LedgerRepository(s).resolve(tenant.id, "f4:hold1", "posted")
    assert (first.replayed, again.replayed) == (False, True)
    async with sessions.begin() as s:
        await LedgerRepository(s).resolve(tenant.id, "f4:hold2", "voided")
    with pytest.raises(LedgerConflict):
        async with sessions.begin() as s:
            await LedgerRepository(s).resolve(tenant.id, "f4:hold2", "posted")
    assert await balance(sessions, tenant) == (700, 0, 0, 700)


async def test_the_database_refuses_a_negative_user_account(sessions, tenant: Tenant) -> None:
    """Even SQL that bypasses the repository cannot overdraw a user account."""
    await post(sessions, tenant, TransferRequest("f5:credit", clearing(), wallet(), 100, "EUR",
                                                 "topup"))
    with pytest.raises(IntegrityError, match="user_accounts_never_negative"):
        async with sessions.begin() as s:
            await s.execute(text("UPDATE accounts SET posted = posted - 101 WHERE tenant_id = :t "
                                 "AND kind = 'user_wallet'"), {"t": tenant.id})


async def test_posted_transfers_cannot_be_updated_or_deleted(sessions, tenant: Tenant) -> None:
    [t] = await post(sessions, tenant, TransferRequest("f6:credit", clearing(), wallet(), 100,
                                                       "EUR", "topup"))
    for sql in ("UPDATE transfers SET amount = 1 WHERE id = :id",
                "UPDATE transfers SET state = 'voided' WHERE id = :id",
                "DELETE FROM transfers WHERE id = :id"):
        with pytest.raises(DBAPIError, match="immutable|cannot be deleted"):
            async with sessions.begin() as s:
                await s.execute(text(sql), {"id": t.transfer_id})
    with pytest.raises(IntegrityError, match="transfers_key_unique"):
        async with sessions.begin() as s:
            await s.execute(text(
                "INSERT INTO transfers (tenant_id, idempotency_key, debit_account_id, "
                "credit_account_id, amount, currency, state, kind, debit_posted_after, "
                "credit_posted_after) SELECT tenant_id, idempotency_key, debit_account_id, "
                "credit_account_id, amount, currency, state, kind, 0, 0 FROM transfers "
                "WHERE id = :id"), {"id": t.transfer_id})


async def test_transfers_cannot_mix_currencies(sessions, tenant: Tenant) -> None:
    await post(sessions, tenant, TransferRequest("f7:credit", clearing(), wallet(), 100, "EUR",
                                                 "topup"))
    with pytest.raises(LedgerConflict):
        await post(sessions, tenant, TransferRequest("f7:x", clearing("USD"), wallet(), 100,
                                                     "EUR", "topup"))
    with pytest.raises(IntegrityError):  # and the database refuses it too
        async with sessions.begin() as s:
            await s.execute(text(
                "INSERT INTO transfers (tenant_id, idempotency_key, debit_account_id, "
                "credit_account_id, amount, currency, state, kind) SELECT :t, 'f7:raw', d.id, "
                "c.id, 1, 'USD', 'pending', 'x' FROM accounts d, accounts c WHERE d.tenant_id = :t "
                "AND c.tenant_id = :t AND d.kind = 'gateway_clearing' AND c.kind = 'user_wallet'"),
                {"t": tenant.id})


async def test_100_concurrent_debits_on_50_euros_let_exactly_50_through(
        database_url: str, sessions, tenant: Tenant) -> None:
    await post(sessions, tenant, TransferRequest("f8:credit", clearing(), wallet(), 5000, "EUR",
                                                 "topup"))
    engine = create_engine(database_url, 20)
    own = session_factory(engine)
    results = {"ok": 0, "refused": 0}
    lowest = [5000]

    async def debit(i: int) -> None:
        try:
            async with own.begin() as s:
                await LedgerRepository(s).post(tenant.id, f"order-{i}", [TransferRequest(
                    f"f8:debit:{i}", wallet(), revenue(), 100, "EUR", "order")])
            results["ok"] += 1
        except InsufficientFunds:
            results["refused"] += 1
        posted, _, _, available = await balance(own, tenant)
        lowest[0] = min(lowest[0], available)

    try:
        await asyncio.gather(*(debit(i) for i in range(100)))
    finally:
        await engine.dispose()
    assert results == {"ok": 50, "refused": 50}
    assert lowest[0] >= 0
    assert await balance(sessions, tenant) == (0, 0, 0, 0)
    async with sessions() as s:
        assert await LedgerRepository(s).check_invariants() == []


async def test_the_invariant_check_detects_a_corrupted_balance(sessions, tenant: Tenant) -> None:
    await post(sessions, tenant, TransferRequest("f9:credit", clearing(), wallet(), 100, "EUR",
                                                 "topup"))
    async with sessions() as s:
        await s.execute(text("UPDATE accounts SET posted = posted + 1 WHERE tenant_id = :t AND "
                             "kind = 'user_wallet'"), {"t": tenant.id})
        problems = await LedgerRepository(s).check_invariants()
        await s.rollback()
    assert any("cached balance" in p for p in problems)
    assert any("do not balance" in p for p in problems)


async def test_the_clearing_account_is_sharded_and_read_as_one(sessions, tenant: Tenant) -> None:
    """gateway_clearing is split over shards (one hot row would serialise every top-up); a key
    always lands on the same shard, so a retry is still recognised; reads add them up."""
    transfers = [TransferRequest(f"shard-{i}", clearing(), wallet(f"u{i}"), 100 + i, "EUR",
                                 "topup") for i in range(40)]
    for t in transfers:
        await post(sessions, tenant, t)
    again = await post(sessions, tenant, transfers[7])
    assert again[0].replayed  # same key → same shard → the first result
    async with sessions() as s:
        shards = (await s.execute(text(
            "SELECT owner_id, posted FROM accounts WHERE tenant_id = :t "
            "AND kind = 'gateway_clearing'"), {"t": tenant.id})).all()
        system = await LedgerRepository(s).system_balances(tenant.id)
    assert len(shards) > 8 and all(o.startswith("stripe#") for o, _ in shards)
    total = -sum(100 + i for i in range(40))
    assert sum(p for _, p in shards) == total
    assert [(b.kind, b.owner_id, b.currency, b.posted) for b in system] == [
        ("gateway_clearing", "stripe", "EUR", total)]
    async with sessions.begin() as s:
        with pytest.raises(ValueError):
            await LedgerRepository(s).lock(tenant.id, [clearing()])


async def test_a_refusal_leaves_the_transaction_usable(sessions, tenant: Tenant) -> None:
    """Insufficient funds is answered without an error inside PostgreSQL, so the caller's
    transaction can go on (e.g. a clawback that finds the cashback already spent)."""
    async with sessions.begin() as s:
        repo = LedgerRepository(s)
        with pytest.raises(InsufficientFunds):
            await repo.post(tenant.id, "f", [TransferRequest("r-1", wallet(), revenue(), 500,
                                                             "EUR", "payment")])
        await repo.post(tenant.id, "f", [TransferRequest("r-2", clearing(), wallet(), 700,
                                                         "EUR", "topup")])
    assert (await balance(sessions, tenant))[0] == 700


async def test_concurrent_activity_posts_share_statements_yet_keep_their_own_outcomes(
        database_url: str, sessions, tenant: Tenant) -> None:
    """The worker groups concurrent post_transfers calls into one ledger_post_many() statement
    (one commit); each request is still all-or-nothing with its own answer."""
    engine = create_engine(database_url, 4, pre_ping=False)
    ledger = LedgerActivities(session_factory(engine))

    def req(flow: str, *transfers: TransferRequest, events: list[EventOut] | None = None
            ) -> PostTransfersRequest:
        return PostTransfersRequest(tenant.id, flow, list(transfers), events=events or [])

    rich, poor = wallet("rich"), wallet("poor")
    event = EventOut(tenant.id, "g:event", "test.happened", {"n": 1})
    try:
        await ledger.post_transfers(req("fund", TransferRequest("g:fund", clearing(), rich, 1000,
                                                                "EUR", "topup")))
        await ledger.post_transfers(req("first", TransferRequest("g:first", clearing(), poor, 5,
                                                                 "EUR", "topup")))
        before = ledger._posts.batches
        credits = [req(f"c{i}", TransferRequest(f"g:credit:{i}", clearing(), wallet(f"g{i}"),
                                                100, "EUR", "topup"),
                       events=[event] if i == 0 else None) for i in range(40)]
        debits = [req(f"d{i}", TransferRequest(f"g:debit:{i}", rich, revenue(), 100, "EUR",
                                               "order")) for i in range(20)]
        dup = req("dup", TransferRequest("g:dup", clearing(), wallet("dup"), 7, "EUR", "topup"))
        conflict = req("first", TransferRequest("g:first", clearing(), poor, 6, "EUR", "topup"))
        malformed = req("bad", TransferRequest("g:bad", clearing(), poor, 0, "EUR", "topup"))
        half = req("half", TransferRequest("g:half:1", clearing(), wallet("half"), 50, "EUR",
                                           "topup"),
                   TransferRequest("g:half:2", poor, revenue(), 500, "EUR", "order"))
        everything = [*credits, *debits, dup, dup, conflict, malformed, half]
        results = await asyncio.gather(*(ledger.post_transfers(r) for r in everything),
                                       return_exceptions=True)
    finally:
        await engine.dispose()
    batches = ledger._posts.batches - before
    assert batches < len(everything) / 2, batches  # grouped, not one statement each

    def refused(r: object) -> str | None:
        return r.type if isinstance(r, ApplicationError) and r.non_retryable else None

    assert all(isinstance(r, list) and not r[0].replayed for r in results[:40])
    debit_results = results[40:60]
    assert sum(isinstance(r, list) for r in debit_results) == 10
    assert [refused(r) for r in debit_results].count("insufficient_funds") == 10
    d1, d2 = results[60:62]
    assert isinstance(d1, list) and isinstance(d2, list)
    assert d1[0].transfer_id == d2[0].transfer_id and {d1[0].replayed, d2[0].replayed} == {
        True, False}
    assert [refused(r) for r in results[62:65]] == [
        "ledger_conflict", "ledger_conflict", "insufficient_funds"]
    assert await balance(sessions, tenant, "rich") == (0, 0, 0, 0)
    assert await balance(sessions, tenant, "poor") == (5, 0, 0, 5)
    assert await balance(sessions, tenant, "half") == (0, 0, 0, 0)  # nothing of the refused one
    assert await balance(sessions, tenant, "g39") == (100, 0, 0, 100)
    async with sessions() as s:
        rows = (await s.execute(text(
            "SELECT idempotency_key FROM transfers WHERE tenant_id = :t AND idempotency_key "
            "LIKE 'g:%'"), {"t": tenant.id})).scalars().all()
        events = (await s.execute(text(
            "SELECT count(*) FROM outbox_events WHERE tenant_id = :t AND event_key = 'g:event'"),
            {"t": tenant.id})).scalar_one()
        assert await LedgerRepository(s).check_invariants() == []
    assert len(rows) == 2 + 40 + 10 + 1 and len(set(rows)) == len(rows)
    assert events == 1
