"""Everything that touches kombu: the reliable fetch (pop + `unacked` record in one script),
its contract with kombu's internals, the poison guard, the wire format, heartbeats that keep a
live worker's messages, the promoter of due retries, and the worker start-up checks.
"""
