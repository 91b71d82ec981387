"""Temporal workflows: orchestration only, sandbox-pure (no I/O, no SQLAlchemy, no Stripe)."""
