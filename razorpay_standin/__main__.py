"""Run the Razorpay stand-in under uvicorn:

    python -m razorpay_standin --host 127.0.0.1 --port 12112 \
        --webhook-url http://127.0.0.1:8000/v1/webhooks/razorpay --webhook-secret ... \
        [--key-id rzp_test_...] [--key-secret ...] [--auto-process-refunds]
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from razorpay_standin import RazorpayStandinConfig, create_app
from razorpay_standin.config import DEV_KEY_ID, DEV_KEY_SECRET


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m razorpay_standin",
                                     description="Local Razorpay-compatible stand-in server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12112)
    parser.add_argument("--key-id", default=DEV_KEY_ID)
    parser.add_argument("--key-secret", default=DEV_KEY_SECRET)
    parser.add_argument("--webhook-url", default=None,
                        help="where events are delivered (none: events are only recorded)")
    parser.add_argument("--webhook-secret", default=None, help="the webhook signing secret")
    parser.add_argument("--public-url", default=None,
                        help="base URL of checkout pages (default http://HOST:PORT)")
    parser.add_argument("--auto-process-refunds", action="store_true",
                        help="process every refund right after it is created (default: "
                             "pending until /_standin/refunds/ID/process)")
    parser.add_argument("--log-level", default="info")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(RazorpayStandinConfig(
        key_id=args.key_id, key_secret=args.key_secret, webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        public_url=args.public_url or f"http://{args.host}:{args.port}",
        auto_process_refunds=args.auto_process_refunds))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
