"""What every layer stands on: settings, the exception tree, Redis key templates and
connection, redaction and scrubbed logging. Imports nothing else of worker.
"""
