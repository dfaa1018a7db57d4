"""OAuth tokens: one-time authorization, a shared record in Redis, one locked refresher.

Workers use `worker.auth.access` only; everything that talks to the token endpoint lives behind
`worker.auth.refresher` (beat task, `auth refresh`) and the `leadsync auth` commands.
"""
