"""A local Constant Contact: OAuth2 authorization server and V3 contacts API (`leadsync sandbox`).

    from worker.sandbox import SandboxServer, SandboxConfig
    sandbox = SandboxServer(SandboxConfig(auto_approve=True)).start()
    ...
    sandbox.stop()
"""

from worker.sandbox.config import SandboxConfig
from worker.sandbox.server import SandboxServer

__all__ = ["SandboxConfig", "SandboxServer"]
