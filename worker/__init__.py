"""leadsync: sales leads into Constant Contact (V3) from a Celery worker.

The Celery app lives in `worker.celery:app`; importing this package does not build it, so
producers can `from worker.leads.enqueue import enqueue_lead` cheaply.
"""

__version__ = "0.1.0"
