"""What `leadsync status` and `health` report: lead counts from counters, queue depths, the
token state, the quota plan. Reads every other part; nothing below imports it.
"""
