"""The two-command demo: an embedded redis-server, the sandbox, a worker and beat as children,
and demo leads.
"""
