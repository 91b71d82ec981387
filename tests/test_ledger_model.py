"""The ledger against its model (tests/ledger_model.py): a Hypothesis state machine posts
transfers, holds, resolutions, multi-transfer requests, replays, conflicting keys, a key twice
in one request (refused as a conflict, never retried), overdrafts and concurrent batches
through the worker's group commit to the REAL PostgreSQL, and after every step the ledger and
the model agree (balances, every transfer by key), the invariants hold (`walletflow ledger
check`) and every currency sums to zero.

RuleBasedStateMachine is synchronous: the test drives its own event loop and engine (the
session's loop and engine belong to pytest-asyncio). Each example runs in a fresh tenant.
``WALLETFLOW_PROOF=long`` runs many more examples and steps (docs/testing.md)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.ledger import LedgerActivities
from contracts.ledger import (
    AccountRef,
    PostedTransfer,
    PostTransfersRequest,
    ResolveTransfersRequest,
    TransferRequest,
)
from db.engine import create_engine, session_factory
from db.ledger import LedgerError, LedgerRace, LedgerRepository
from tests.ledger_model import OK, RETRY, Leg, Model, Outcome, Ref, linearize, matches
from tests.support import create_tenant

T = TypeVar("T")
LONG = os.environ.get("WALLETFLOW_PROOF") == "long"
EXAMPLES = int(os.environ.get("WALLETFLOW_PROOF_EXAMPLES", 500 if LONG else 30))
STEPS = int(os.environ.get("WALLETFLOW_PROOF_STEPS", 50 if LONG else 25))

CURRENCIES = ("EUR", "PTS", "USD", "JPY")
USERS = ("u1", "u2", "u3")
SYSTEM = (("gateway_clearing", "stripe"), ("merchant_revenue", "tenant"),
          ("cashback_funding", "tenant"), ("points_issuance", "tenant"), ("fees", "tenant"),
          ("payouts_in_transit", "stripe"), ("campaign", "c1"))
KINDS = ("topup", "order", "transfer", "cashback")
_TRANSFERS = text(
    "SELECT t.idempotency_key, t.id, t.state, d.kind, split_part(d.owner_id, '#', 1), "
    "d.currency, c.kind, split_part(c.owner_id, '#', 1), c.currency, t.amount, t.currency "
    "FROM transfers t JOIN accounts d ON d.id = t.debit_account_id "
    "JOIN accounts c ON c.id = t.credit_account_id WHERE t.tenant_id = :t")


def users(cur: str) -> list[Ref]:
    return [("user_points" if cur == "PTS" else "user_wallet", u, cur) for u in USERS]


def systems(cur: str) -> list[Ref]:
    return [(kind, owner, cur) for kind, owner in SYSTEM]


@dataclass
class Run:
    """What every example shares: the loop, the engine's sessions, and the figures."""

    loop: asyncio.AbstractEventLoop
    sessions: async_sessionmaker[AsyncSession]
    examples: int = 0
    steps: int = 0
    requests: dict[str, int] = field(default_factory=dict)  # by rule
    outcomes: dict[str, int] = field(default_factory=dict)  # answers by code
    batched: int = 0  # requests posted in a concurrent batch
    statements: int = 0  # the group commit's statements that carried them
    repeated: int = 0  # requests that named one idempotency key twice

    def got(self, *outcomes: Outcome) -> None:
        for o in outcomes:
            self.outcomes[o.code] = self.outcomes.get(o.code, 0) + 1

    async def violations(self, session: AsyncSession | None = None) -> list[str]:
        """``walletflow ledger check``'s findings (each check's name and number of cases)."""
        if session is None:
            async with self.sessions() as own:
                return await self.violations(own)
        found = await LedgerRepository(session).check_invariants()
        return [problem.partition(", e.g.")[0] for problem in found]

    def wait(self, work: Awaitable[T]) -> T:
        return self.loop.run_until_complete(work)


def request(tenant_id: str, legs: list[Leg], pending: bool, kind: str
            ) -> PostTransfersRequest:
    return PostTransfersRequest(tenant_id, "flow-model", [
        TransferRequest(leg.key, AccountRef(*leg.debit), AccountRef(*leg.credit), leg.amount,
                        leg.currency, kind, {"via": "model"}) for leg in legs], pending)


def outcome(posted: list[PostedTransfer]) -> Outcome:
    return Outcome(OK, tuple((t.idempotency_key, t.replayed, t.state) for t in posted),
                   tuple(t.transfer_id for t in posted))


class LedgerMachine(RuleBasedStateMachine):
    run: Run  # set on the subclass the test builds

    def __init__(self) -> None:
        super().__init__()
        self.run.examples += 1
        self.tenant_id = self.run.wait(create_tenant(self.run.sessions, "model")).id
        self.ledger = LedgerActivities(self.run.sessions)
        self.model = Model()
        self.counter = 0
        # The invariants check reads the whole ledger: an example must add no violation to
        # what was there before it (nothing, unless an earlier example already failed; then
        # each example is still judged on its own, so the failure shrinks).
        self.before = self.run.wait(self.run.violations())
        # Some money and a hold to start with, so there is always a key to replay or resolve.
        # (What a step draws must never depend on how a concurrent batch happened to run:
        # Hypothesis replays the draws, so keys are picked by index, modulo what exists.)
        self.expect([Leg("seed", ("gateway_clearing", "stripe", "EUR"),
                         ("user_wallet", "u1", "EUR"), 10_000, "EUR")], False, "repository")
        self.expect([Leg("seed-hold", ("user_wallet", "u1", "EUR"),
                         ("merchant_revenue", "tenant", "EUR"), 2_500, "EUR")], True,
                    "repository")

    # -- drawing requests ------------------------------------------------------------------------

    def fresh_key(self) -> str:
        self.counter += 1
        return f"k{self.counter}"

    def draw_leg(self, data: st.DataObject, key: str) -> Leg:
        cur = data.draw(st.sampled_from(CURRENCIES), "currency")
        pattern = data.draw(st.sampled_from(("fund", "spend", "p2p", "system")), "pattern")
        if pattern == "p2p":
            debit, credit = data.draw(st.permutations(users(cur)), "users")[:2]
        elif pattern == "system":
            debit, credit = data.draw(st.permutations(systems(cur)), "systems")[:2]
        else:
            user = data.draw(st.sampled_from(users(cur)), "user")
            system = data.draw(st.sampled_from(systems(cur)), "system")
            debit, credit = (system, user) if pattern == "fund" else (user, system)
        if debit[0].startswith("user") and data.draw(st.booleans(), "at the edge"):
            # exactly the available amount, or one unit either side of it
            amount = max(1, self.model.available(debit) + data.draw(st.integers(-1, 1), "edge"))
        else:
            amount = data.draw(st.integers(1, 20_000), "amount")
        return Leg(key, debit, credit, amount, cur)

    def draw_malformed(self, data: st.DataObject) -> Leg:
        leg = self.draw_leg(data, self.fresh_key())
        how = data.draw(st.sampled_from(("to itself", "across currencies", "not positive")))
        if how == "to itself":
            return Leg(leg.key, leg.debit, leg.debit, leg.amount, leg.currency)
        if how == "across currencies":
            other = "USD" if leg.currency != "USD" else "EUR"
            return Leg(leg.key, leg.debit, systems(other)[1], leg.amount, leg.currency)
        return Leg(leg.key, leg.debit, leg.credit, data.draw(st.integers(-5, 0)), leg.currency)

    def draw_existing(self, data: st.DataObject) -> Leg:
        return self.model.transfers[self.pick(data, sorted(self.model.transfers))].leg

    @staticmethod
    def pick(data: st.DataObject, keys: list[str]) -> str:
        return keys[data.draw(st.integers(0, 255), "key index") % len(keys)]

    def draw_altered(self, data: st.DataObject, leg: Leg | None = None) -> Leg:
        """An existing key (or ``leg``'s) with another movement."""
        leg = leg or self.draw_existing(data)
        how = data.draw(st.sampled_from(("amount", "accounts", "currency")), "altered")
        if how == "amount":
            return Leg(leg.key, leg.debit, leg.credit, leg.amount + 1, leg.currency)
        if how == "accounts":
            return Leg(leg.key, leg.credit, leg.debit, leg.amount, leg.currency)
        other = next(c for c in CURRENCIES if c != leg.currency)
        return Leg(leg.key, (*leg.debit[:2], other), (*leg.credit[:2], other), leg.amount,
                   other)

    def draw_legs(self, data: st.DataObject, most: int) -> list[Leg]:
        """A request's legs: mostly new movements, some replays, conflicts or malformed, and
        some repeat a key of the request itself (the same movement or another)."""
        kinds = ["new", "new", "new", "malformed", "replay", "conflict", "repeat"]
        legs: list[Leg] = []
        for _ in range(data.draw(st.integers(1, most), "legs")):
            kind = data.draw(st.sampled_from(kinds), "leg kind")
            if kind == "repeat" and legs:
                earlier = legs[data.draw(st.integers(0, 255), "repeated leg") % len(legs)]
                legs.append(earlier if data.draw(st.booleans(), "same movement")
                            else self.draw_altered(data, earlier))
                continue
            legs.append(self.draw_leg(data, self.fresh_key()) if kind in ("new", "repeat")
                        else self.draw_malformed(data) if kind == "malformed"
                        else self.draw_existing(data) if kind == "replay"
                        else self.draw_altered(data))
        return legs

    # -- talking to the ledger -------------------------------------------------------------------

    async def post(self, legs: list[Leg], pending: bool, via: str, kind: str = "topup"
                   ) -> Outcome:
        req = request(self.tenant_id, legs, pending, kind)
        self.run.repeated += len({leg.key for leg in legs}) < len(legs)
        if via == "activity":  # the worker's path: group commit, one autocommit statement
            try:
                return outcome(await self.ledger.post_transfers(req))
            except ApplicationError as e:
                return Outcome(str(e.type))
        try:  # the repository in a caller's transaction (as the API and other activities)
            async with self.run.sessions.begin() as session:
                return outcome(await LedgerRepository(session).post(
                    self.tenant_id, req.flow_id, req.transfers, pending))
        except LedgerError as e:
            return Outcome(e.code)
        except (LedgerRace, IntegrityError):  # the activity reports both as retryable
            return Outcome(RETRY)

    async def at_once(self, batch: list[tuple[list[Leg], bool]]) -> list[Outcome]:
        return list(await asyncio.gather(*(self.post(legs, pending, "activity")
                                           for legs, pending in batch)))

    def expect(self, legs: list[Leg], pending: bool, via: str, kind: str = "topup") -> None:
        """One request, alone: the ledger answers what the model expects, and both move on."""
        expected, after = self.model.post(legs, pending)
        got = self.run.wait(self.post(legs, pending, via, kind))
        self.run.got(got)
        assert matches(expected, got), f"expected {expected}, the ledger answered {got}"
        if got.code == OK:
            after = after.copy()
            after.learn_ids(got.rows, got.ids)  # type: ignore[arg-type]
        self.model = after

    def count(self, name: str) -> None:
        self.run.steps += 1
        self.run.requests[name] = self.run.requests.get(name, 0) + 1

    # -- rules -----------------------------------------------------------------------------------

    @rule(data=st.data(), via=st.sampled_from(("activity", "repository")))
    def transfer(self, data: st.DataObject, via: str) -> None:
        """One posted transfer: funding, spending (overdrafts at the edge), p2p, system."""
        self.count("transfer")
        self.expect([self.draw_leg(data, self.fresh_key())], False, via)

    @rule(data=st.data(), via=st.sampled_from(("activity", "repository")))
    def hold(self, data: st.DataObject, via: str) -> None:
        self.count("hold")
        legs = [self.draw_leg(data, self.fresh_key())
                for _ in range(data.draw(st.integers(1, 2), "holds"))]
        self.expect(legs, True, via)

    @rule(data=st.data(), resolution=st.sampled_from(("posted", "voided")))
    def resolve(self, data: st.DataObject, resolution: str) -> None:
        """Post or void holds (several keys in one transaction, all or nothing); some keys are
        already resolved either way, not holds, or unknown."""
        self.count("resolve")
        every = sorted(self.model.transfers)
        pending = [k for k in every if self.model.transfers[k].state == "pending"] or every
        keys = [self.pick(data, pending) if which == "hold" else
                self.pick(data, every) if which == "any" else "no-such-key"
                for which in data.draw(st.lists(st.sampled_from(("hold", "hold", "any",
                                                                 "unknown")),
                                                min_size=1, max_size=3), "which keys")]
        expected, after = self.model.resolve(keys, resolution)
        try:
            got = outcome(self.run.wait(self.ledger.resolve_transfers(
                ResolveTransfersRequest(self.tenant_id, keys, resolution))))
        except ApplicationError as e:
            got = Outcome(str(e.type))
        self.run.got(got)
        assert matches(expected, got), f"expected {expected}, the ledger answered {got}"
        self.model = after

    @rule(data=st.data(), pending=st.booleans(), via=st.sampled_from(("activity", "repository")))
    def several(self, data: st.DataObject, pending: bool, via: str) -> None:
        """A multi-transfer request: all or nothing, whatever leg is refused."""
        self.count("several")
        self.expect(self.draw_legs(data, 4), pending, via)

    @rule(data=st.data(), pending=st.booleans(), kind=st.sampled_from(KINDS),
          via=st.sampled_from(("activity", "repository")))
    def replay(self, data: st.DataObject, pending: bool, kind: str, via: str) -> None:
        """A key again with the same movement (any business kind, either flag): the first
        result again, nothing moved."""
        self.count("replay")
        self.expect([self.draw_existing(data)], pending, via, kind)

    @rule(data=st.data(), via=st.sampled_from(("activity", "repository")))
    def conflict(self, data: st.DataObject, via: str) -> None:
        self.count("conflict")
        self.expect([self.draw_altered(data)], False, via)

    @rule(data=st.data())
    def concurrent(self, data: st.DataObject) -> None:
        """Requests at once through the worker's group commit (they share ledger_post_many()
        statements); some reuse each other's keys, some repeat a key within themselves
        (refused as a conflict). Some serial order must explain every outcome; a request that
        lost a race is retried."""
        self.count("concurrent")
        batch: list[tuple[list[Leg], bool]] = []
        for _ in range(data.draw(st.integers(2, 8), "requests")):
            legs = self.draw_legs(data, 2)
            reuse: bool = data.draw(st.booleans(), "reuse a batch key")
            if batch and reuse:
                earlier = [leg for b, _p in batch for leg in b]
                taken = earlier[data.draw(st.integers(0, 255), "leg index") % len(earlier)]
                legs[0] = (taken if data.draw(st.booleans(), "same movement")
                           else self.draw_altered(data, taken))
            if data.draw(st.integers(0, 9), "repeat a key") == 9:
                legs.append(legs[0])
            batch.append((legs, data.draw(st.booleans(), "pending")))
        statements = self.ledger._posts.batches
        got = self.run.wait(self.at_once(batch))
        self.run.batched += len(batch)
        self.run.got(*got)
        self.run.statements += self.ledger._posts.batches - statements
        found = linearize(self.model, batch, list(got))
        assert found is not None, f"no serial order explains {got} for {batch}"
        self.model, retry = found
        for n in retry:  # as the flow's retry policy would
            self.expect(*batch[n], "activity")

    # -- after every step ------------------------------------------------------------------------

    @invariant()
    def ledger_agrees_with_the_model(self) -> None:
        shown, transfers, problems = self.run.wait(self.read())
        assert problems == self.before, problems
        expected = {ref: (*b, b[0] - b[2]) for ref, b in self.model.shown_balances().items()}
        assert shown == expected
        assert transfers == self.model.shown_transfers()
        for cur in {ref[2] for ref in shown}:
            of = [b for ref, b in shown.items() if ref[2] == cur]
            assert sum(b[0] for b in of) == 0, f"{cur} does not sum to zero: {shown}"
            assert sum(b[1] for b in of) == sum(b[2] for b in of), f"{cur} pending: {shown}"

    async def read(self) -> tuple[dict[Ref, tuple[int, ...]], dict[str, tuple[object, ...]],
                                  list[str]]:
        """The tenant's balances (non-zero) and transfers by key, read back through the
        repositories, and the invariants check over the whole ledger."""
        async with self.run.sessions() as session:
            repo = LedgerRepository(session)
            found = await repo.system_balances(self.tenant_id)
            for user in USERS:
                found += await repo.balances(self.tenant_id, user)
            rows = await session.execute(_TRANSFERS, {"t": self.tenant_id})
            problems = await self.run.violations(session)
        shown: dict[Ref, tuple[int, ...]] = {
            (b.kind, b.owner_id, b.currency): (b.posted, b.pending_in, b.pending_out,
                                               b.available)
            for b in found if (b.posted, b.pending_in, b.pending_out) != (0, 0, 0)}
        transfers: dict[str, tuple[object, ...]] = {
            r[0]: (r[1], r[2], (r[3], r[4], r[5]), (r[6], r[7], r[8]), r[9], r[10])
            for r in rows}
        return shown, transfers, problems


def test_the_ledger_matches_its_model(database_url: str) -> None:
    loop = asyncio.new_event_loop()
    engine = create_engine(database_url, 5)
    run = Run(loop, session_factory(engine))
    machine = type("LedgerModelMachine", (LedgerMachine,), {"run": run})
    started = time.perf_counter()
    try:
        assert run.wait(run.violations()) == []
        run_state_machine_as_test(machine, settings=settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, derandomize=True, database=None,
            deadline=None, suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False))  # shrink the first bug found, quicker
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
    print(f"\nledger model: {run.examples} examples, {run.steps} steps {run.requests}, "
          f"answers {run.outcomes}, {run.batched} concurrent requests in {run.statements} "
          f"statements, {run.repeated} requests with a key twice, "
          f"{time.perf_counter() - started:.1f} s")
    # the concurrent batches did share group-commit statements (ledger_post_many())
    assert run.statements < run.batched, (run.statements, run.batched)
    assert run.repeated > 0  # the model did send requests that name a key twice


async def test_a_key_twice_in_one_request_is_refused_not_retried(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """A request naming one key twice can never be written: a final ``ledger_conflict`` before
    the database is asked (alone or in a group-commit batch), nothing written; the request it
    repeats, sent again, is still answered with its first result."""
    tenant_id = (await create_tenant(sessions, "twice")).id
    ledger = LedgerActivities(sessions)
    funding = Leg("fund", ("gateway_clearing", "stripe", "EUR"), ("user_wallet", "u1", "EUR"),
                  1_000, "EUR")
    spend = Leg("spend", ("user_wallet", "u1", "EUR"), ("merchant_revenue", "tenant", "EUR"),
                300, "EUR")
    first = await ledger.post_transfers(request(tenant_id, [funding], False, "topup"))
    for legs in ([spend, spend], [funding, funding], [spend, funding, spend]):
        other = Leg(f"other-{len(legs)}", funding.debit, funding.credit, 5, "EUR")
        alone = [request(tenant_id, legs, False, "order")]
        batch = [request(tenant_id, legs, False, "order"),
                 request(tenant_id, [other], False, "topup")]
        for reqs in (alone, batch):
            got = await asyncio.gather(*(ledger.post_transfers(r) for r in reqs),
                                       return_exceptions=True)
            refusal = got[0]
            assert isinstance(refusal, ApplicationError), got
            assert (refusal.type, refusal.non_retryable) == ("ledger_conflict", True)
            assert "repeated in one request" in str(refusal)
            assert all(isinstance(g, list) for g in got[1:]), got
    again = await ledger.post_transfers(request(tenant_id, [funding], False, "topup"))
    assert [(t.transfer_id, t.replayed) for t in again] == [(first[0].transfer_id, True)]
    async with sessions() as session:
        keys = (await session.execute(text(
            "SELECT idempotency_key FROM transfers WHERE tenant_id = :t ORDER BY id"),
            {"t": tenant_id})).scalars().all()
    assert keys == ["fund", "other-2", "other-3"]
