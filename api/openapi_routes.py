"""Per-operation facts the OpenAPI document is completed with (api/openapi.py): each operation's
success model and statuses, its own refusals, and the headers it reads itself. A new route gets
a row in ``SUCCESS`` (tests/test_contract.py fails without one) and in ``REFUSALS`` for every
business refusal it answers."""

from __future__ import annotations

from pydantic import BaseModel

from api import payees as pay
from api import razorpay as rzp
from api import settings_models as sm
from api import views as v
from api import views_admin as a
from contracts.errors import ErrorCode as E

STARTED = (201, 202, 200)  # done; still running (ask status_url); a replay of a closed flow

# operation → (its success model, its success statuses); None: text/plain.
SUCCESS: dict[str, tuple[type[BaseModel] | None, tuple[int, ...]]] = {
    "POST /v1/topups": (v.TopUpView, STARTED),
    "POST /v1/orders": (v.OrderStartView, STARTED),
    "GET /v1/orders/{order_id}": (v.OrderView, (200,)),
    "POST /v1/orders/{order_id}/refunds": (v.RefundStartView, STARTED),
    "GET /v1/refunds/{flow_id}": (v.FlowStatusView, (200,)),
    "POST /v1/refunds/{flow_id}/approve": (v.DecisionView, (200,)),
    "POST /v1/refunds/{flow_id}/reject": (v.DecisionView, (200,)),
    "GET /v1/campaigns": (v.CampaignList, (200,)),
    "POST /v1/campaigns": (v.CampaignView, (201,)),
    "GET /v1/campaigns/{campaign_id}": (v.CampaignView, (200,)),
    "POST /v1/campaigns/{campaign_id}/donations": (v.DonationView, STARTED),
    "GET /v1/users/{user_id}/donations": (v.DonationList, (200,)),
    "POST /v1/withdrawals": (v.WithdrawalStartView, (202, 200)),
    "GET /v1/withdrawals": (v.WithdrawalList, (200,)),
    "GET /v1/withdrawals/{flow_id}": (v.FlowStatusView, (200,)),
    "POST /v1/withdrawals/{flow_id}/approve": (v.DecisionView, (200,)),
    "POST /v1/withdrawals/{flow_id}/reject": (v.DecisionView, (200,)),
    "POST /v1/users": (v.UserView, (201, 200)),
    "POST /v1/users/{user_id}/payout-account": (pay.OnboardingView, (201, 200)),
    "GET /v1/users/{user_id}/payout-account": (pay.PayoutAccountView, (200,)),
    "GET /v1/wallets/{user_id}": (v.WalletView, (200,)),
    "GET /v1/wallets/{user_id}/transactions": (v.TransactionPage, (200,)),
    "GET /v1/ledger/accounts": (v.SystemAccounts, (200,)),
    "GET /v1/flows/{flow_id}": (v.FlowStatusView, (200,)),
    "GET /v1/flows": (v.FlowPage, (200,)),
    "POST /v1/webhooks/stripe": (a.WebhookAck, (200,)),
    "POST /v1/webhooks/razorpay": (a.WebhookAck, (200,)),
    "POST /v1/topups/{flow_id}/verify": (rzp.VerifyView, (200,)),
    "POST /v1/purchases": (a.PurchaseAccepted, (201, 200)),
    "POST /v1/purchases/{order_id}/cancel": (a.StoreEventOutcome, (200,)),
    "POST /v1/purchases/{order_id}/refunds": (a.StoreEventOutcome, (200,)),
    "GET /v1/purchases/{order_id}": (v.FlowStatusView, (200,)),
    "POST /v1/stores": (a.StoreCredentialView, (201,)),
    "GET /v1/stores": (a.StoreList, (200,)),
    "POST /v1/stores/{store_id}/rotate": (a.StoreCredentialView, (200,)),
    "DELETE /v1/stores/{store_id}": (a.DeletedView, (200,)),
    "GET /v1/users/{user_id}": (v.UserDetailView, (200,)),
    "PATCH /v1/webhook-endpoints/{endpoint_id}": (a.EndpointView, (200,)),
    "POST /v1/webhook-endpoints/{endpoint_id}/disable": (a.EndpointView, (200,)),
    "POST /v1/webhook-endpoints/{endpoint_id}/enable": (a.EndpointView, (200,)),
    "DELETE /v1/webhook-endpoints/{endpoint_id}": (a.DeletedView, (200,)),
    "POST /v1/widget/purchases": (a.PurchaseAccepted, (201, 200)),
    "POST /v1/widget/interactions": (a.InteractionView, (201,)),
    "POST /v1/webhooks/shopify": (a.WebhookAck, (200,)),
    "POST /v1/webhooks/woocommerce": (a.WebhookAck, (200,)),
    "GET /v1/analytics": (a.AnalyticsView, (200,)),
    "GET /v1/settings/rewards": (a.RewardsPolicyView, (200,)),
    "PUT /v1/settings/rewards": (a.RewardsPolicyView, (200,)),
    "GET /v1/settings/refunds": (sm.RefundSettingsView, (200,)),
    "PUT /v1/settings/refunds": (sm.RefundSettingsView, (200,)),
    "GET /v1/settings/withdrawals": (sm.WithdrawalSettingsView, (200,)),
    "PUT /v1/settings/withdrawals": (sm.WithdrawalSettingsView, (200,)),
    "GET /v1/settings/events": (sm.EventSettingsView, (200,)),
    "PUT /v1/settings/events": (sm.EventSettingsView, (200,)),
    "GET /v1/settings/payments": (sm.PaymentSettingsView, (200,)),
    "PUT /v1/settings/payments": (sm.PaymentSettingsView, (200,)),
    "GET /v1/settings/audit": (sm.SettingsAuditPage, (200,)),
    "GET /v1/webhook-endpoints": (a.EndpointList, (200,)),
    "POST /v1/webhook-endpoints": (a.EndpointView, (201,)),
    "POST /v1/webhook-endpoints/{endpoint_id}/rotate": (a.EndpointView, (200,)),
    "GET /v1/webhook-deliveries": (a.DeliveryList, (200,)),
    "POST /v1/webhook-deliveries/{delivery_id}/resend": (a.ResendView, (202,)),
    "GET /metrics": (None, (200,)),
    "GET /healthz": (a.HealthView, (200,)),
    "GET /readyz": (a.ReadinessView, (200, 503)),  # 503: not ready, with the same body
}

Refusal = E | tuple[E, int]  # a code, or a code this route answers with another status
_DECIDE = (E.DECISION_REFUSED, E.REQUESTER_CANNOT_APPROVE, E.FORBIDDEN)
_SIGNED = (E.SIGNATURE_MISSING, E.SIGNATURE_INVALID, (E.MALFORMED_PAYLOAD, 400))
_WIDGET = (E.SIGNATURE_MISSING, E.SIGNATURE_INVALID, E.REPLAYED)
# The route's own refusals (besides those its dependencies and path imply).
REFUSALS: dict[str, tuple[Refusal, ...]] = {
    "POST /v1/topups": (E.USER_NOT_FOUND, E.INVALID_AMOUNT, E.INVALID_CURRENCY,
                        E.UNKNOWN_PACKAGE, E.UNKNOWN_GATEWAY, E.GATEWAY_REFUSED,
                        E.GATEWAY_UNAVAILABLE),
    "POST /v1/orders": (E.USER_NOT_FOUND, E.UNKNOWN_GATEWAY, E.INVALID_AMOUNT,
                        E.INVALID_CURRENCY,
                        E.INSUFFICIENT_FUNDS, E.PAYMENT_FAILED, E.GATEWAY_REFUSED,
                        E.LEDGER_CONFLICT, E.GATEWAY_UNAVAILABLE),
    "GET /v1/orders/{order_id}": (E.ORDER_NOT_FOUND,),
    "POST /v1/orders/{order_id}/refunds": (
        E.ORDER_NOT_FOUND, E.CURRENCY_MISMATCH, E.INVALID_AMOUNT, E.NOT_REFUNDABLE,
        E.REFUND_EXCEEDS_PAID, E.REJECTED, E.EXPIRED, E.REFUND_FAILED, E.INSUFFICIENT_FUNDS,
        E.GATEWAY_UNAVAILABLE),
    "GET /v1/refunds/{flow_id}": (E.REFUND_NOT_FOUND,),
    "POST /v1/refunds/{flow_id}/approve": (E.REFUND_NOT_FOUND, *_DECIDE),
    "POST /v1/refunds/{flow_id}/reject": (E.REFUND_NOT_FOUND, *_DECIDE),
    "POST /v1/campaigns": (E.INVALID_AMOUNT, E.INVALID_CURRENCY, E.CAMPAIGN_EXISTS),
    "GET /v1/campaigns/{campaign_id}": (E.CAMPAIGN_NOT_FOUND,),
    "POST /v1/campaigns/{campaign_id}/donations": (
        E.CAMPAIGN_NOT_FOUND, E.USER_NOT_FOUND, E.INVALID_AMOUNT, E.CURRENCY_MISMATCH,
        E.CAMPAIGN_CLOSED, E.EXCEEDS_TARGET, E.INSUFFICIENT_FUNDS),
    "POST /v1/withdrawals": (E.USER_NOT_FOUND, E.INVALID_AMOUNT, E.OVER_LIMIT,
                             E.INSUFFICIENT_FUNDS, E.REJECTED, E.EXPIRED, E.PAYOUT_FAILED,
                             E.ACCOUNT_MISSING, E.GATEWAY_REFUSED),
    "POST /v1/users/{user_id}/payout-account": (E.USER_NOT_FOUND, E.GATEWAY_REFUSED,
                                                E.GATEWAY_UNAVAILABLE),
    "GET /v1/users/{user_id}/payout-account": (E.USER_NOT_FOUND, E.NOT_FOUND),
    "GET /v1/withdrawals/{flow_id}": (E.WITHDRAWAL_NOT_FOUND,),
    "POST /v1/withdrawals/{flow_id}/approve": (E.WITHDRAWAL_NOT_FOUND, *_DECIDE),
    "POST /v1/withdrawals/{flow_id}/reject": (E.WITHDRAWAL_NOT_FOUND, *_DECIDE),
    "GET /v1/wallets/{user_id}": (E.USER_NOT_FOUND,),
    "GET /v1/wallets/{user_id}/transactions": (E.USER_NOT_FOUND, E.INVALID_CURSOR),
    "GET /v1/flows/{flow_id}": (E.FLOW_NOT_FOUND,),
    "GET /v1/flows": (E.INVALID_CURSOR,),
    "POST /v1/webhooks/stripe": ((E.SIGNATURE_MISSING, 400), (E.SIGNATURE_INVALID, 400),
                                 E.MALFORMED_PAYLOAD),
    "POST /v1/webhooks/razorpay": ((E.SIGNATURE_MISSING, 400), (E.SIGNATURE_INVALID, 400),
                                   E.MALFORMED_PAYLOAD),
    "POST /v1/topups/{flow_id}/verify": (E.FLOW_NOT_FOUND, (E.SIGNATURE_INVALID, 400)),
    "PUT /v1/settings/payments": (E.UNKNOWN_GATEWAY,),
    "POST /v1/purchases": (E.INVALID_AMOUNT,),
    "POST /v1/purchases/{order_id}/cancel": (E.PURCHASE_NOT_FOUND,),
    "POST /v1/purchases/{order_id}/refunds": (E.PURCHASE_NOT_FOUND, E.INVALID_AMOUNT,
                                              E.CURRENCY_MISMATCH),
    "GET /v1/purchases/{order_id}": (E.PURCHASE_NOT_FOUND,),
    "POST /v1/widget/purchases": (*_WIDGET, E.INVALID_AMOUNT),
    "POST /v1/widget/interactions": _WIDGET,
    "POST /v1/webhooks/shopify": _SIGNED,
    "POST /v1/webhooks/woocommerce": _SIGNED,
    "GET /v1/analytics": (E.INVALID_PERIOD, E.INVALID_CURRENCY),
    "GET /v1/settings/audit": (E.INVALID_CURSOR,),
    "POST /v1/webhook-endpoints": (E.URL_NOT_ALLOWED,),
    "POST /v1/webhook-endpoints/{endpoint_id}/rotate": (E.ENDPOINT_NOT_FOUND,),
    "PATCH /v1/webhook-endpoints/{endpoint_id}": (E.ENDPOINT_NOT_FOUND, E.URL_NOT_ALLOWED),
    "POST /v1/webhook-endpoints/{endpoint_id}/disable": (E.ENDPOINT_NOT_FOUND,),
    "POST /v1/webhook-endpoints/{endpoint_id}/enable": (E.ENDPOINT_NOT_FOUND,),
    "DELETE /v1/webhook-endpoints/{endpoint_id}": (E.ENDPOINT_NOT_FOUND,),
    "GET /v1/webhook-endpoints": (E.INVALID_CURSOR,),
    "GET /v1/webhook-deliveries": (E.INVALID_CURSOR,),
    "POST /v1/stores": (E.STORE_EXISTS,),
    "GET /v1/stores": (E.INVALID_CURSOR,),
    "POST /v1/stores/{store_id}/rotate": (E.STORE_NOT_FOUND,),
    "DELETE /v1/stores/{store_id}": (E.STORE_NOT_FOUND,),
    "GET /v1/users/{user_id}": (E.USER_NOT_FOUND,),
    "GET /v1/users/{user_id}/donations": (E.USER_NOT_FOUND, E.INVALID_CURSOR),
    "GET /v1/campaigns": (E.INVALID_CURSOR,),
    "GET /v1/withdrawals": (E.INVALID_CURSOR,),
    "POST /v1/webhook-deliveries/{delivery_id}/resend": (E.DELIVERY_NOT_FOUND,),
}

_SIGNATURE = "HMAC-SHA256 of the raw body, base64"
# Headers a route reads itself (signatures): (name, required, description).
HEADERS: dict[str, tuple[tuple[str, bool, str], ...]] = {
    "POST /v1/webhooks/stripe": (("Stripe-Signature", True, "t=<unix time>,v1=<hex HMAC>"),),
    "POST /v1/webhooks/razorpay": (
        ("X-Razorpay-Signature", True, "hex HMAC-SHA256 of the raw body (webhook secret)"),
        ("X-Razorpay-Event-Id", True, "the event id (deduplicated)")),
    "POST /v1/webhooks/shopify": (
        ("X-Shopify-Hmac-Sha256", True, _SIGNATURE), ("X-Shopify-Shop-Domain", False, ""),
        ("X-Shopify-Topic", False, "orders/create, orders/cancelled, refunds/create"),
        ("X-Shopify-Webhook-Id", False, "the delivery id (deduplicated)")),
    "POST /v1/webhooks/woocommerce": (
        ("X-WC-Webhook-Signature", False, _SIGNATURE + " (absent only on the setup ping)"),
        ("X-WC-Webhook-Source", False, ""), ("X-WC-Webhook-Topic", False, ""),
        ("X-WC-Webhook-Delivery-ID", False, "the delivery id (deduplicated)")),
}
_WIDGET_HEADERS = (
    ("X-Walletflow-Key", True, "the widget's public key"),
    ("X-Walletflow-Timestamp", True, "unix seconds, within ±300 s"),
    ("X-Walletflow-Signature", True, "hex HMAC-SHA256 of \"<timestamp>.<raw body>\""))
HEADERS["POST /v1/widget/purchases"] = HEADERS["POST /v1/widget/interactions"] = _WIDGET_HEADERS
