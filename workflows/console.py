"""What the Temporal UI shows an operator: the search attributes every flow carries (set at its
start, its state upserted as it goes), the static summary and details a flow starts with, the
current details it keeps (what it waits for), and the descriptions of its signals, updates and
queries. Sandbox-pure: the workflows use it, and the API, the dispatcher and the schedules build
their start options with ``start_options``.

A signal that stands for a gateway's (or a store's) word says so: sending it by hand from the
UI is the same as the gateway saying it, and goes through the same checks."""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from contracts.money import Money

# -- search attributes ------------------------------------------------------------------------

TENANT = SearchAttributeKey.for_keyword("WalletflowTenant")  # the tenant's slug
USER = SearchAttributeKey.for_keyword("WalletflowUser")
KIND = SearchAttributeKey.for_keyword("WalletflowKind")  # topup, refund, withdrawal, …
STATE = SearchAttributeKey.for_keyword("WalletflowState")  # upserted at every state change
AMOUNT = SearchAttributeKey.for_int("WalletflowAmount")  # minor units
CURRENCY = SearchAttributeKey.for_keyword("WalletflowCurrency")
# name → the type as `temporal server start-dev --search-attribute` and
# `temporal operator search-attribute create --type` spell it
SEARCH_ATTRIBUTES: dict[str, str] = {
    TENANT.name: "Keyword", USER.name: "Keyword", KIND.name: "Keyword",
    STATE.name: "Keyword", AMOUNT.name: "Int", CURRENCY.name: "Keyword"}
# the patch that guards the state's upsert (histories recorded before it replay without it)
STATE_PATCH = "search-attributes"

# -- message descriptions (shown by the UI next to "Send a Signal" / "Execute an Update") -----

GATEWAY_WORD = ("Sending it by hand (Temporal UI, `temporal workflow signal`) is the same as "
                "the gateway saying it: the same checks and deduplication on the event id apply.")
PAYMENT_EVENT = ("The payment gateway's word on this flow's payment (a verified webhook, sent "
                 "by the API): {\"event_id\", \"payment_id\", \"status\", \"amount\", …}. "
                 + GATEWAY_WORD)
REFUND_EVENT = ("The payment gateway's word on this flow's gateway refund (a verified "
                "webhook, sent by the API). " + GATEWAY_WORD)
PAYOUT_EVENT = ("The payment gateway's word on this withdrawal's payout (a verified webhook, "
                "sent by the API). " + GATEWAY_WORD)
STORE_EVENT = ("The store's word on this purchase (a verified Shopify/WooCommerce webhook, "
               "sent by the API): a cancellation or a refund, deduplicated on its event_id. "
               "Sending it by hand is the same as the store saying it.")
DECISION = ("An admin's approval or rejection (maker-checker), the same as the API's and the "
            "CLI's `decide`: {\"admin\": \"<admin>\", \"approve\": true, \"decision_id\": "
            "\"<unique>\", \"reason\": \"…\"}. Checked against the tenant's admins (never the "
            "requester); a decision that fails the checks is ignored and listed in the status.")
DECIDE = ("Approve or reject (API: the admin key's holder; CLI: the named operator); refused "
          "with a reason when the admin may not decide.")
OUTCOME = ("Waits for the flow's first answer (done, refused, or waiting for an approval or "
           "the gateway) and returns its state; the API's start request uses it.")
CHECKOUT = "Waits until the gateway payment exists and returns what the payer needs to pay."
STATUS = ("The flow's state, amounts, steps and typed error (what GET /v1/flows/{id} "
          "returns).")
CAMPAIGN_CLOSED = ("The donation that reached a capped target already closed the campaign in "
                   "the database; the argument is the reason. Ends the campaign's timer.")
CAMPAIGN_STATE = "open, or why the campaign closed."

# -- what a flow waits for, by state (its current details) ------------------------------------

WAITS: dict[str, str] = {
    "awaiting_payment": ("the payer, then the gateway's word on the payment: signal "
                         "`payment_event` (the API sends it on a verified webhook); at the "
                         "expiry the flow asks the gateway itself"),
    "awaiting_gateway": ("the gateway's word on the refund: signal `refund_event`; at the "
                         "deadline the flow asks the gateway itself"),
    "paying_out": ("the payout, then the gateway's word on it: signal `payout_event`; at the "
                   "deadline the flow asks the gateway itself"),
    "awaiting_approval": "an admin's decision: signal `decision` (or the API's approve/reject)",
    "pending": ("the end of the store's return window; the store's word on a refund or "
                "cancellation: signal `store_event`"),
}
RUNNING = "its next activity (ledger, database or gateway); nothing to send"
ENDED = "nothing: the flow has ended"


def current_details(kind: str, state: str, last_step: str | None, waiting: str | None,
                    ended: bool) -> str:
    """The flow's current details (Temporal markdown): its state, its last step and what it
    waits for — ``waiting`` when the flow knows better (an approval), else by state."""
    waits = ENDED if ended else waiting or WAITS.get(state, RUNNING)
    lines = [f"**{kind}** · state **{state}**" + (f" · last step `{last_step}`"
                                                  if last_step else ""),
             f"**Waiting for:** {waits}"]
    return "\n\n".join(lines)


# -- at the start -----------------------------------------------------------------------------

MAIN_AMOUNT = ("amount", "charge")  # the input field that says how much, in this order


def flow_amount(inp: Any) -> Money | None:
    """How much the flow is about, from its input (``amount``, else a top-up's ``charge``)."""
    for name in MAIN_AMOUNT:
        value = getattr(inp, name, None)
        if isinstance(value, Money):
            return value
    return None


def search_attributes(kind: str, tenant: str | None, user: str | None,
                      amount: Money | None) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair[Any]] = [SearchAttributePair(KIND, kind)]
    if tenant:
        pairs.append(SearchAttributePair(TENANT, tenant))
    if user:
        pairs.append(SearchAttributePair(USER, user))
    if amount is not None:
        pairs += [SearchAttributePair(AMOUNT, amount.amount),
                  SearchAttributePair(CURRENCY, amount.currency)]
    return TypedSearchAttributes(pairs)


def start_options(kind: str, tenant: str | None, inp: Any, via: str | None = None
                  ) -> dict[str, Any]:
    """``start_workflow`` keyword arguments: the search attributes, the static summary (what
    it is, for whom, how much) and the static details. ``tenant``: the tenant's slug."""
    user = getattr(inp, "user_id", None)
    amount = flow_amount(inp)
    what = kind.replace("_", " ")
    summary = what + (f" of {amount}" if amount else "") + (f" for {user}" if user else "")
    details = [f"**{what}**" + (f" of **{amount}**" if amount else ""),
               f"tenant `{tenant}`" if tenant else None,
               f"user `{user}`" if user else None]
    for name in ("order_id", "store_order_id", "campaign_id", "delivery_id", "method",
                 "destination", "requested_by", "package", "gateway"):
        value = getattr(inp, name, None)
        if isinstance(value, str) and value:
            details.append(f"{name.replace('_', ' ')}: `{value}`")
    if flow_id := getattr(inp, "flow_id", None):
        details.append(f"status: `GET /v1/flows/{flow_id}`")
    if via:
        details.append(f"started by {via}")
    return {"search_attributes": search_attributes(kind, tenant, user, amount),
            "static_summary": (f"{summary} ({tenant})" if tenant else summary)[:200],
            "static_details": "\n\n".join(d for d in details if d)}
