"""The Temporal worker: builds the dependencies and registers every workflow and activity.

`build_worker` is what production runs and what the tests import."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.campaigns import CampaignActivities
from activities.gateway import GatewayActivities
from activities.gateways import PaymentGateway
from activities.gateways.razorpay_gateway import RazorpayGateway
from activities.gateways.stripe_checkout import StripeCheckoutGateway
from activities.gateways.stripe_gateway import StripeGateway
from activities.ledger import LedgerActivities
from activities.orders import OrderActivities
from activities.outbound import WebhookActivities
from activities.purchases import PurchaseActivities
from activities.reconcile import Reconciler
from activities.refunds import RefundActivities
from activities.withdrawals import WithdrawalActivities
from db.engine import create_engine, ping, resolve_database_url, session_factory
from dispatcher import Dispatcher
from observability import (
    FaultPointInterceptor,
    LogContextInterceptor,
    configure_logging,
    serve_probes,
    temporal_interceptors,
    tracer_provider_from_env,
)
from schedules import ensure_janitor_schedule
from settings import Settings, get_settings
from temporal_client import (
    connect,
    exit_now,
    log_configuration,
    metrics_runtime,
    register_search_attributes,
)
from workflows.campaign import CampaignWorkflow
from workflows.donation import DonationWorkflow
from workflows.janitor import JanitorWorkflow
from workflows.metrics import FlowMetricsInterceptor
from workflows.order_payment import OrderPaymentWorkflow
from workflows.purchase_credit import PurchaseCreditWorkflow
from workflows.refund import RefundWorkflow
from workflows.topup import TopUpWorkflow
from workflows.webhook_delivery import WebhookDeliveryWorkflow
from workflows.withdrawal import WithdrawalWorkflow

WORKFLOWS = [TopUpWorkflow, PurchaseCreditWorkflow, OrderPaymentWorkflow, RefundWorkflow,
             CampaignWorkflow, DonationWorkflow, WithdrawalWorkflow, WebhookDeliveryWorkflow,
             JanitorWorkflow]


def build_gateways(settings: Settings) -> dict[str, PaymentGateway]:
    key = settings.stripe_api_key.get_secret_value()
    gateways: dict[str, PaymentGateway] = {
        "stripe": StripeGateway(key, settings.stripe_api_base, settings.stripe_checkout_base,
                                settings.stripe_timeout_seconds, settings.stripe_minimal_params),
        "stripe_checkout": StripeCheckoutGateway(
            key, settings.stripe_api_base, settings.stripe_timeout_seconds,
            settings.stripe_checkout_success_url, settings.stripe_checkout_cancel_url),
    }
    if settings.razorpay_key_id:
        gateways["razorpay"] = RazorpayGateway(
            settings.razorpay_key_id, settings.razorpay_key_secret.get_secret_value(),
            settings.razorpay_api_base, settings.razorpay_checkout_base,
            settings.razorpay_timeout_seconds)
    return gateways


def workflow_runner() -> SandboxedWorkflowRunner:
    """Workflow modules are pure (no I/O, no global state): they are shared across runs instead
    of re-imported in every run's sandbox (~10 ms off each workflow's first task); the
    sandbox's restrictions on non-deterministic calls still apply. The replay test uses it too."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_all_modules())


def worker_tuning(settings: Settings) -> dict[str, int]:
    """The worker's slot and poller settings that are set (the SDK's defaults otherwise)."""
    names = ("max_concurrent_workflow_tasks", "max_concurrent_activities",
             "max_concurrent_local_activities", "max_concurrent_workflow_task_polls",
             "max_concurrent_activity_task_polls")
    values = {n: getattr(settings, f"worker_{n}") for n in names}
    return {n: v for n, v in values.items() if v is not None}


def build_worker(client: Client, task_queue: str, sessions: async_sessionmaker[AsyncSession],
                 gateways: dict[str, PaymentGateway], ledger_max_in_flight: int = 2,
                 **worker_options: object) -> Worker:
    ledger = LedgerActivities(sessions, max_in_flight=ledger_max_in_flight)
    gateway = GatewayActivities(gateways, sessions)
    purchases = PurchaseActivities(sessions)
    orders = OrderActivities(sessions)
    refunds = RefundActivities(sessions)
    campaigns = CampaignActivities(sessions)
    withdrawals = WithdrawalActivities(sessions)
    webhooks = WebhookActivities(sessions)
    reconciler = Reconciler(gateways, sessions, client)
    interceptors = [LogContextInterceptor(), FlowMetricsInterceptor(),
                    *worker_options.pop("interceptors", []),  # type: ignore[misc]
                    FaultPointInterceptor()]  # innermost: faultpoints.py
    return Worker(
        client,
        workflow_runner=workflow_runner(),
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            ledger.post_transfers,
            ledger.resolve_transfers,
            orders.record_status,
            refunds.reserve,
            refunds.settle,
            refunds.clawback,
            campaigns.transfer,
            campaigns.award_points,
            campaigns.close,
            withdrawals.hold,
            webhooks.deliver,
            webhooks.emit,
            webhooks.give_up,
            withdrawals.settle,
            gateway.create_payout,
            gateway.retrieve_payout,
            gateway.reverse_payout,
            gateway.create_refund,
            gateway.retrieve_refund,
            gateway.create_payment,
            gateway.retrieve_payment,
            gateway.cancel_payment,
            purchases.evaluate,
            purchases.apply_step,
            reconciler.reconcile, reconciler.nudge_paid, reconciler.remove_orphans,
        ],
        interceptors=interceptors,
        **worker_options,  # type: ignore[arg-type]
    )


async def readiness(client: Client, engine: AsyncEngine,
                    polling: Callable[[], bool]) -> dict[str, str]:
    """The worker's /readyz: it polls its task queue, and PostgreSQL and Temporal answer."""
    checks = {"worker": "ok" if polling() else "not polling"}
    probes: dict[str, Callable[[], Awaitable[object]]] = {
        "postgres": lambda: ping(engine), "temporal": client.service_client.check_health}
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe(), 3)
            checks[name] = "ok"
        except Exception as e:  # noqa: BLE001 - any failure means not ready
            checks[name] = f"unavailable: {type(e).__name__}"
    return checks


async def main() -> None:
    configure_logging("worker")
    settings = get_settings()  # production mode: exits listing what is missing
    log_configuration(settings, "worker")
    tracer_provider = tracer_provider_from_env("worker")
    engine = create_engine(await resolve_database_url(settings.database_url, settings.state_dir),
                           settings.db_pool_size, pre_ping=False)
    gateways = build_gateways(settings)
    runtime = (metrics_runtime(settings.worker_metrics_address)
               if settings.worker_metrics_address else None)
    client = await connect(settings, runtime, temporal_interceptors(tracer_provider))
    worker = build_worker(client, settings.temporal_task_queue, session_factory(engine), gateways,
                          max_cached_workflows=settings.worker_max_cached_workflows,
                          ledger_max_in_flight=settings.ledger_max_in_flight,
                          **worker_tuning(settings))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    dispatcher = None
    if settings.run_dispatcher:
        dispatcher = asyncio.create_task(
            Dispatcher(client, session_factory(engine), settings.temporal_task_queue).run())
    added = await register_search_attributes(client, client.namespace)
    if added:
        logging.info("registered the search attributes %s", ", ".join(added))
    await ensure_janitor_schedule(client, settings.temporal_task_queue,
                                  settings.janitor_interval_seconds)
    polling = False
    probes = None
    if settings.worker_health_address:
        probes = await serve_probes(settings.worker_health_address,
                                    lambda: readiness(client, engine, lambda: polling))
    async with worker:
        polling = True
        logging.info("worker polling task queue %s", settings.temporal_task_queue)
        await stop.wait()
        polling = False
    if probes:
        probes.close()
    if dispatcher:
        dispatcher.cancel()
    for gw in gateways.values():
        await gw.close()
    await engine.dispose()
    if tracer_provider is not None:
        tracer_provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
    logging.shutdown()
    exit_now(0)  # skip interpreter teardown (the Temporal runtime's threads, sdk-python#300)
