"""Every lead's state in Redis: the atomic ledger and its LeadState table, the retry
schedule, parked leads, dead letters, durable outcome writes, the reconciler, counts for status.
"""
