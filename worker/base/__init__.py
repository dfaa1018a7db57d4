"""What every layer stands on: settings, the exception tree, Redis key templates and
connection, the `Scope` (settings + client + keys) lower layers are built from, backoff, the
lock lease keeper, redaction and scrubbed logging. Imports nothing else of worker.
"""
