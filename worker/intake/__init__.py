"""HTTP intake: leads over HTTP onto the same Redis queue (`leadsync intake`).

Modules: `app` (Starlette routes), `apikeys` (API keys stored hashed), `signatures` (signed
webhooks), `admission` (credential check + per-credential rate limit, one Lua call), `sources`
(declarative maps from each source's payload to the lead), `push` (the atomic queueing),
`server` (uvicorn runner).
"""
