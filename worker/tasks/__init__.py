"""Celery tasks: thin wrappers; the logic lives in plain modules tests call without a broker."""
