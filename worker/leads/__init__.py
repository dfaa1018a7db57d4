"""The lead: its versioned model and limits, and the producer side (enqueue_lead/enqueue_leads)
that turns leads into `leadsync.sync_lead` messages on queue `leads` (plain dicts through
lead_fast, the model's rules without pydantic; anything else through the model).
"""
