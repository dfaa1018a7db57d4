"""What the sandbox received, for tests, benchmarks and the demo (`GET /_sandbox/stats`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    requests_by_status: Counter[int] = field(default_factory=Counter)
    api_requests: int = 0
    token_requests: int = 0
    token_throttled: int = 0
    refreshes: int = 0
    invalid_grant: int = 0
    unauthorized_401: int = 0
    throttled_429: Counter[str] = field(default_factory=Counter)
    contacts_created: int = 0
    contacts_updated: int = 0
    sign_up_form_calls: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    imports: int = 0  # contacts_json_import calls answered 201
    activity_polls: int = 0  # GET /activities/{id} calls

    def as_dict(self, active: int, deleted: int, generation: int) -> dict[str, Any]:
        calls = self.sign_up_form_calls
        return {
            "contacts": {"count": active, "deleted": deleted, "created": self.contacts_created,
                         "updated": self.contacts_updated},
            "sign_up_form": {"calls": sum(calls.values()), "contacts": len(calls),
                             "max_calls_per_contact": max(calls.values(), default=0)},
            "sign_up_form_calls_per_contact": dict(calls),
            "requests_by_status": {str(k): v for k, v in sorted(self.requests_by_status.items())},
            "api_requests": self.api_requests,
            "token_requests": self.token_requests,
            "token_throttled": self.token_throttled,
            "refreshes": self.refreshes,
            "invalid_grant": self.invalid_grant,
            "unauthorized_401": self.unauthorized_401,
            "throttled_429": {"throttled": self.throttled_429["throttled"],
                              "quota_exceeded": self.throttled_429["quota_exceeded"]},
            "faults_injected": dict(self.faults_injected),
            "activities": {"imports": self.imports, "polls": self.activity_polls},
            "refresh_token_generation": generation,
        }
