"""Run the Stripe stand-in under uvicorn:

    python -m stripe_standin --host 127.0.0.1 --port 12111 \
        --webhook-url http://127.0.0.1:8000/v1/webhooks/stripe --webhook-secret whsec_... \
        [--webhook-secret whsec_old...] [--state-file .walletflow/stripe.json] \
        [--public-url http://127.0.0.1:12111] [--auto-succeed-refunds] [--auto-pay-payouts]
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from stripe_standin import StandinConfig, create_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stripe_standin",
                                     description="Local Stripe-compatible stand-in server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", default=None,
                        help="where events are delivered (none: events are only recorded)")
    parser.add_argument("--webhook-secret", action="append", default=[],
                        help="signing secret; repeat (or comma-separate) for rotation, "
                             "the first is current")
    parser.add_argument("--state-file", default=None,
                        help="persist state as JSON here and reload it at start")
    parser.add_argument("--public-url", default=None,
                        help="base URL of checkout pages (default http://HOST:PORT)")
    parser.add_argument("--api-key-prefix", default="sk_")
    parser.add_argument("--auto-succeed-refunds", action="store_true",
                        help="resolve every refund as succeeded right after it is created "
                             "(default: refunds stay pending until /_standin/refunds/ID/succeed)")
    parser.add_argument("--auto-pay-payouts", action="store_true",
                        help="mark every payout paid right after it is created "
                             "(default: payouts stay pending until /_standin/payouts/ID/paid)")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> StandinConfig:
    secrets = [s.strip() for value in args.webhook_secret for s in value.split(",") if s.strip()]
    return StandinConfig(
        webhook_url=args.webhook_url,
        webhook_secrets=secrets,
        api_key_prefix=args.api_key_prefix,
        public_url=args.public_url or f"http://{args.host}:{args.port}",
        state_file=args.state_file,
        auto_succeed_refunds=args.auto_succeed_refunds,
        auto_pay_payouts=args.auto_pay_payouts,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(config_from_args(args))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
