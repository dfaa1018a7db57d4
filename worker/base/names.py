"""The public contract's queue and task names (../shared/CONVENTIONS.md), defined once.

Producers in any language, the Celery app, the fetch, the ledger and `status` all read these;
changing one is a change of the public contract.
"""

LEADS_QUEUE = "leads"  # also the Redis list kombu reads for it (priority 0)
CONTROL_QUEUE = "leadsync-control"  # beat's tasks and the workers' refresh requests

SYNC_LEAD = "leadsync.sync_lead"
REFRESH_TOKEN = "leadsync.refresh_token"
RESUME_PARKED = "leadsync.resume_parked"
RECONCILE = "leadsync.reconcile"
BULK_IMPORT = "leadsync.bulk_import"
