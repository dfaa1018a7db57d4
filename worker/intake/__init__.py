"""HTTP intake: leads over HTTP onto the same Redis queue (`leadsync intake`).

Modules: `app` (Starlette routes), `core` (validation and answers every route shares),
`admission` (credential + rate limit + idempotent atomic push: one Lua call per request),
`apikeys` (API keys stored hashed), `signatures` (signed webhooks), `sources` (declarative maps
from each source's payload to the lead), `body` (content type, size and batch limits),
`redis_client` (asyncio client), `server` (uvicorn runner). Notes: docs/notes/intake.md.
"""
