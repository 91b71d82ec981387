"""Connect's operations as `Executor`s (run by `stripe_api.api_call` under the lock) and its
control transitions (complete an account's onboarding, restrict it), which record and send
``account.updated`` with the account at the top level. The resources' rules: `connect`."""

from __future__ import annotations

import copy
import logging

from stripe_standin import connect
from stripe_standin.calls import ACCOUNT_OPERATIONS
from stripe_standin.listing import list_objects
from stripe_standin.service import Executor, Outcome, Standin
from stripe_standin.store import Store, StoredEvent
from stripe_standin.wire import JSON, format_amount

logger = logging.getLogger("stripe_standin")

(ACCOUNT_CREATE, ACCOUNT_RETRIEVE, ACCOUNT_LIST, ACCOUNT_LINK_CREATE, TRANSFER_CREATE,
 TRANSFER_RETRIEVE, BALANCE_RETRIEVE, TRANSFER_LIST, REVERSAL_CREATE) = ACCOUNT_OPERATIONS


def _read(body: JSON) -> Outcome:
    return Outcome(200, copy.deepcopy(body), replayable=False)


class ConnectOps:
    def __init__(self, svc: Standin) -> None:
        self.svc = svc

    @property
    def store(self) -> Store:
        return self.svc.store

    def create_account(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        account = connect.create_account(self.store, params)
        logger.info("connected account %s (%s)", account["id"], account["type"])
        return Outcome(200, copy.deepcopy(account), mutated=True)

    def retrieve_account(self, acct_id: str) -> Executor:
        return lambda params, request_id, key: _read(connect.get_account(self.store, acct_id))

    def list_accounts(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        accounts = connect.state(self.store)["accounts"]
        return Outcome(200, list_objects(accounts, params, "/v1/accounts", "account"),
                       replayable=False)

    def create_account_link(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        link = connect.create_account_link(self.store, params, self.svc.config.public_url)
        return Outcome(200, link)

    def create_transfer(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        transfer = connect.create_transfer(self.store, params)
        logger.info("transfer %s: %s to %s", transfer["id"],
                    format_amount(transfer["amount"], transfer["currency"]),
                    transfer["destination"])
        return Outcome(200, copy.deepcopy(transfer), mutated=True)

    def retrieve_transfer(self, tr_id: str) -> Executor:
        return lambda params, request_id, key: _read(connect.get_transfer(self.store, tr_id))

    def list_transfers(self, params: JSON, request_id: str, key: str | None) -> Outcome:
        return Outcome(200, list_objects(connect.transfers_of(self.store, params), params,
                                         "/v1/transfers", "transfer"), replayable=False)

    def create_reversal(self, tr_id: str) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            reversal = connect.create_reversal(self.store, tr_id, params)
            logger.info("transfer %s reversed: %s back from %s", tr_id,
                        format_amount(reversal["amount"], reversal["currency"]),
                        connect.get_transfer(self.store, tr_id)["destination"])
            return Outcome(200, copy.deepcopy(reversal), mutated=True)
        return execute

    def balance(self, acct_id: str | None) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            if acct_id is None:  # the platform's (never a limit in the stand-in)
                return _read(connect.balance_object(self.store, None))
            connect.acting_account(self.store, acct_id)
            return _read(connect.balance_object(self.store, acct_id))
        return execute

    # payouts on a connected account (the Stripe-Account header)

    def create_payout(self, acct_id: str) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            payout = connect.create_payout(self.store, acct_id, params)
            logger.info("payout %s on %s: %s", payout["id"], acct_id,
                        format_amount(payout["amount"], payout["currency"]))
            events: list[StoredEvent] = []
            if self.svc.config.auto_pay_payouts:
                events = self.svc.resolve_payout_locked(payout["id"], "paid")
            return Outcome(200, copy.deepcopy(payout), events, mutated=True)
        return execute

    def retrieve_payout(self, acct_id: str | None, po_id: str) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            if acct_id is not None:
                connect.acting_account(self.store, acct_id)
            return _read(connect.visible_payout(self.store, acct_id, po_id))
        return execute

    def list_payouts(self, acct_id: str | None) -> Executor:
        def execute(params: JSON, request_id: str, key: str | None) -> Outcome:
            if acct_id is not None:
                connect.acting_account(self.store, acct_id)
            return Outcome(200, list_objects(connect.payouts_of(self.store, acct_id), params,
                                             "/v1/payouts", "payout"), replayable=False)
        return execute

    # control

    async def update_account(self, acct_id: str, change: str) -> JSON:
        """``complete`` onboarding or ``restrict`` payouts; sends ``account.updated``."""
        async with self.svc.lock:
            if change == "complete":
                account = connect.complete_onboarding(self.store, acct_id)
            else:
                account = connect.restrict(self.store, acct_id)
            event = connect.with_account(self.svc.record_event("account.updated", account),
                                         acct_id)
            await self.store.save()
        self.svc.dispatch(event)
        return {"account": copy.deepcopy(account), "event": event.event}
