"""Activities: every side effect (database, gateways). Classes get their dependencies in the
constructor; each ledger activity is one database transaction and safe to retry."""
