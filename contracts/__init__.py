"""The shared contracts of walletflow: money, ledger and gateway-neutral types, flow status,
rewards rules, error codes, and one module per flow with its input/result types and activity
names.

Standard library only, so the API, the database layer, the activities and the sandboxed
workflows can all import it, and the default data converter (de)serialises its dataclasses.
"""
