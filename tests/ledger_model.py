"""A plain-Python model of what the double-entry ledger must hold (tests/test_ledger_model.py
drives it beside the real ledger and compares the two after every step).

Accounts are logical (kind, owner, currency): the sharded ``gateway_clearing`` is one account
here, its shards added up by the reads. Every operation returns the outcome the ledger must
report and the model after it; a refusal leaves the model as it was (all or nothing)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

Ref = tuple[str, str, str]  # (kind, owner, currency)
USER_KINDS = frozenset({"user_wallet", "user_points"})

OK = "ok"
FUNDS = "insufficient_funds"
CONFLICT = "ledger_conflict"
RETRY = "ledger_retry"


@dataclass(frozen=True)
class Leg:
    """One transfer of a request."""

    key: str
    debit: Ref
    credit: Ref
    amount: int
    currency: str

    @property
    def content(self) -> tuple[Ref, Ref, int, str]:
        """What the ledger compares when a key comes again (the business kind, metadata and
        the pending flag are not part of it: such a request replays the first result)."""
        return self.debit, self.credit, self.amount, self.currency

    @property
    def malformed(self) -> bool:
        return (self.amount <= 0 or self.debit == self.credit
                or self.debit[2] != self.currency or self.credit[2] != self.currency)


@dataclass(frozen=True)
class Held:
    """A transfer the ledger holds, by key."""

    leg: Leg
    state: str  # pending | posted | voided
    transfer_id: int | None  # learnt from the ledger's first answer


@dataclass(frozen=True)
class Outcome:
    """What a request gets: OK and one (key, replayed, state) row per transfer, or a refusal
    code (an ``ErrorCode`` value)."""

    code: str
    rows: tuple[tuple[str, bool, str], ...] = ()
    ids: tuple[int | None, ...] = ()  # the transfer ids (None: not known to the model yet)


@dataclass
class Model:
    balances: dict[Ref, tuple[int, int, int]] = field(default_factory=dict)  # posted, in, out
    transfers: dict[str, Held] = field(default_factory=dict)

    def copy(self) -> Model:
        return Model(dict(self.balances), dict(self.transfers))

    def balance(self, ref: Ref) -> tuple[int, int, int]:
        return self.balances.get(ref, (0, 0, 0))

    def available(self, ref: Ref) -> int:
        posted, _, out = self.balance(ref)
        return posted - out

    def _move(self, ref: Ref, posted: int = 0, pending_in: int = 0, pending_out: int = 0) -> None:
        p, i, o = self.balance(ref)
        self.balances[ref] = (p + posted, i + pending_in, o + pending_out)

    # -- posting (``ledger_post_many()``) -------------------------------------------------------

    def post(self, legs: list[Leg], pending: bool) -> tuple[Outcome, Model]:
        """A request's outcome, and the model after it."""
        if any(leg.malformed for leg in legs):
            return Outcome(CONFLICT), self  # refused before the database is asked
        if len({leg.key for leg in legs}) < len(legs):
            # A key twice in one request (same movement or not, new or already written): it
            # can never be written as asked, so it is refused as a conflict before the database
            # is asked, never reported as a race to retry.
            return Outcome(CONFLICT), self
        after = self.copy()
        rows: list[tuple[str, bool, str]] = []
        ids: list[int | None] = []
        for leg in legs:
            prev = self.transfers.get(leg.key)
            if prev is not None:
                if prev.leg.content != leg.content:
                    return Outcome(CONFLICT), self
                rows.append((leg.key, True, prev.state))
                ids.append(prev.transfer_id)
                continue
            if leg.debit[0] in USER_KINDS and after.available(leg.debit) < leg.amount:
                return Outcome(FUNDS), self
            if pending:
                after._move(leg.debit, pending_out=leg.amount)
                after._move(leg.credit, pending_in=leg.amount)
            else:
                after._move(leg.debit, posted=-leg.amount)
                after._move(leg.credit, posted=leg.amount)
            state = "pending" if pending else "posted"
            after.transfers[leg.key] = Held(leg, state, None)
            rows.append((leg.key, False, state))
            ids.append(None)
        return Outcome(OK, tuple(rows), tuple(ids)), after

    def learn_ids(self, rows: tuple[tuple[str, bool, str], ...], ids: tuple[int, ...]) -> None:
        """The transfer ids the ledger gave the new transfers."""
        for (key, replayed, _), transfer_id in zip(rows, ids, strict=True):
            if not replayed:
                self.transfers[key] = replace(self.transfers[key], transfer_id=transfer_id)

    # -- resolving holds (``LedgerRepository.resolve``, all keys in one transaction) -----------

    def resolve(self, keys: list[str], outcome: str) -> tuple[Outcome, Model]:
        after = self.copy()
        rows: list[tuple[str, bool, str]] = []
        ids: list[int | None] = []
        for key in keys:
            held = after.transfers.get(key)
            if held is None:
                return Outcome(CONFLICT), self
            ids.append(held.transfer_id)
            if held.state == outcome:
                rows.append((key, True, outcome))
                continue
            if held.state != "pending":
                return Outcome(CONFLICT), self
            leg = held.leg
            moved = leg.amount if outcome == "posted" else 0
            after._move(leg.debit, posted=-moved, pending_out=-leg.amount)
            after._move(leg.credit, posted=moved, pending_in=-leg.amount)
            after.transfers[key] = replace(held, state=outcome)
            rows.append((key, False, outcome))
        return Outcome(OK, tuple(rows), tuple(ids)), after

    # -- what the ledger must show ---------------------------------------------------------------

    def shown_balances(self) -> dict[Ref, tuple[int, int, int]]:
        return {ref: b for ref, b in self.balances.items() if b != (0, 0, 0)}

    def shown_transfers(self) -> dict[str, tuple[object, ...]]:
        return {key: (h.transfer_id, h.state, *h.leg.content)
                for key, h in self.transfers.items()}


def matches(expected: Outcome, actual: Outcome) -> bool:
    """The ledger's answer is the one the model expects (a transfer id the model does not
    know yet matches any)."""
    return (expected.code == actual.code and expected.rows == actual.rows
            and all(e is None or e == a for e, a in zip(expected.ids, actual.ids, strict=True)))


def linearize(model: Model, requests: list[tuple[list[Leg], bool]], outcomes: list[Outcome]
              ) -> tuple[Model, list[int]] | None:
    """Concurrent requests: some serial order in which the model gives every request the
    outcome it got. A request that got RETRY (a lost race: nothing written) may have lost a
    race the serial model cannot see; it is left out, and the caller retries it, as a flow's
    retry policy would. Returns the model after the batch and the requests to retry, or None
    when no order explains the outcomes. Search by the set of requests applied: the model
    after a set does not depend on the order (balances add up, keys are a union)."""
    retry = [n for n, o in enumerate(outcomes) if o.code == RETRY]
    todo = frozenset(range(len(requests))) - frozenset(retry)
    dead: set[frozenset[int]] = set()

    def search(state: Model, left: frozenset[int]) -> Model | None:
        if not left:
            return state
        if left in dead:
            return None
        for n in sorted(left):
            expected, after = state.post(*requests[n])
            if matches(expected, outcomes[n]):
                if expected.code == OK:
                    after = after.copy()
                    after.learn_ids(outcomes[n].rows, outcomes[n].ids)  # type: ignore[arg-type]
                found = search(after, left - {n})
                if found is not None:
                    return found
        dead.add(left)
        return None

    found = search(model, todo)
    return None if found is None else (found, retry)
