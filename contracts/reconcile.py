"""Reconciliation and the janitor: the ledger compared with the gateway's own objects (payments,
refunds, payouts), and the scheduled sweep that fixes what is safe (a paid payment whose flow
still waits, a claimed flow row that never got a workflow). Stdlib only."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.money import Money

RECONCILE = "reconcile.run"
NUDGE_PAID = "janitor.nudge_paid"
REMOVE_ORPHANS = "janitor.remove_orphans"
JANITOR_WORKFLOW = "JanitorWorkflow"
JANITOR_SCHEDULE_ID = "walletflow-janitor"
KINDS = ("payment", "refund", "payout")  # the gateway objects a flow creates and the ledger moves

# Drift, per gateway object:
# the gateway says succeeded (a payout: paid), the ledger moved nothing for it
SUCCEEDED_WITHOUT_LEDGER = "succeeded_without_ledger"
# the ledger moved for it, the gateway does not say succeeded (or does not list it)
LEDGER_WITHOUT_SUCCESS = "ledger_without_success"
# the gateway's amount, the amount the flow recorded and the ledger's movement differ
AMOUNT_DIFFERS = "amount_differs"
# a succeeded object whose metadata names one of our tenants, never recorded by a flow
UNRECORDED_OBJECT = "unrecorded_object"
# a posted movement through a gateway account whose flow recorded no such object
LEDGER_WITHOUT_OBJECT = "ledger_without_object"


@dataclass
class SeenObject:
    """A payment, refund or payout as the gateway lists it."""

    kind: str  # KINDS
    gateway: str
    object_id: str
    status: str  # contracts.gateway PAYMENT_* (a paid payout is PAYMENT_SUCCEEDED)
    amount: Money
    flow_id: str | None  # its metadata's, when it has one
    tenant_id: str | None
    created: int  # unix seconds


@dataclass
class RecordedObject:
    """A gateway object a flow recorded (``gateway_objects``) and what the ledger moved for it:
    posted transfers of its flow out of the gateway's clearing account (a payment), into it (a
    refund) or into payouts in transit (a payout)."""

    kind: str
    gateway: str
    object_id: str
    tenant_id: str
    flow_id: str
    amount: Money  # what the flow created it for
    moved: int  # minor units, in the object's currency


@dataclass
class LedgerOnly:
    """A gateway movement in the ledger whose flow recorded no object of that kind."""

    kind: str
    tenant_id: str
    flow_id: str
    moved: Money


@dataclass
class Drift:
    problem: str  # one of the drift names above
    kind: str
    object_id: str | None
    flow_id: str | None
    tenant_id: str | None
    detail: str
    amount: Money | None = None  # the gateway's amount, when it lists the object


@dataclass
class ReconcileInput:
    tenant_id: str | None = None  # None: every tenant
    since_seconds: int = 2 * 24 * 3600  # objects created in this window
    settle_seconds: int = 0  # objects younger than this are left alone (webhooks in flight)


@dataclass
class ReconcileReport:
    checked: int
    drifts: list[Drift] = field(default_factory=list)


@dataclass
class JanitorInput:
    tenant_id: str | None = None  # None: every tenant
    stale_after_seconds: int = 120  # a payment unpaid-for in the ledger this long is asked about
    since_seconds: int = 2 * 24 * 3600  # how far back payments and drift are looked at
    orphan_grace_seconds: int = 600  # a claimed row with no workflow this old is removed …
    orphan_max_age_seconds: int = 12 * 3600  # … unless older (its workflow may be past retention)
    reconcile: bool = True


@dataclass
class JanitorResult:
    nudged: list[str] = field(default_factory=list)  # flows signalled with the gateway's word
    orphans_removed: list[str] = field(default_factory=list)
    drifts: int = 0
