"""The HTTP API: thin endpoints that validate, start/signal/update/query workflows and map the
outcome to HTTP."""
