"""Database: engine, table definitions, the ledger repository and Alembic migrations."""
