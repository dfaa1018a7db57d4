"""Issue 4, done when 6, mid-run: the refresh token is revoked while leads are flowing (short
access tokens, the beat refreshing). The refresh fails with invalid_grant, the token state turns
reauth_required, and every lead not yet sent parks with reason `reauth` without spending its
retry budget and without a dead letter. After the real `leadsync auth device` (auto-approved by
the sandbox) the beat's resume_parked puts them back and each arrives exactly once."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable

import pytest
import redis

from tests.fixtures.delivery import DEFAULT_RATE_ENV, Fleet
from tests.fixtures.fleet import people
from tests.fixtures.ops import leadsync_bin, wait_for
from worker.account import Account
from worker.auth.access import token_state
from worker.base.keys import Keys
from worker.base.names import LEADS_QUEUE
from worker.base.priority import queued

pytestmark = [pytest.mark.redis, pytest.mark.slow]

LEADS = 120  # consent leads at 3.7/s: ~32 s of sending, revoked a fifth of the way in
REVOKE_AFTER = 25


def test_refresh_token_revoked_mid_run_parks_then_auth_device_delivers_all(
    fleet: Callable[..., Fleet], redis_client: redis.Redis
) -> None:
    run = fleet(rate_limit_per_s=4.0, access_token_lifetime_s=6, refresh_tokens="rotating",
                auto_approve=True, device_interval_s=1,
                settings_env={**DEFAULT_RATE_ENV,
                              "LEADSYNC_REFRESH_MARGIN_RATIO": "0.5",
                              "LEADSYNC_REFRESH_INTERVAL_S": "1",
                              "LEADSYNC_RESUME_INTERVAL_S": "1"})
    run.start_worker("v1", concurrency=4)
    run.start_beat()
    run.wait_ready("v1")
    sandbox, settings = run.stack.sandbox, run.stack.settings
    lead_ids = run.push_raw(people(LEADS, tag="revoked", consent=True))

    wait_for(lambda: sandbox.stats()["contacts"]["count"] >= REVOKE_AFTER, 60,
             f"{REVOKE_AFTER} contacts before the revocation")
    sandbox.revoke_refresh_tokens()
    wait_for(lambda: token_state(Account(settings, redis_client).tokens) == "reauth_required", 30,
             "the token state to turn reauth_required")

    # Whatever was not sent with the last good access token parks; nothing else happens to it.
    states = run.wait_settled(lead_ids, 60, settled=("delivered", "parked"))
    wait_for(lambda: queued(redis_client, LEADS_QUEUE) == 0, 30, "the queue to drain")
    counts = Counter(states.values())
    ledger = Account(settings, redis_client).ledger
    parked = [lead for lead, state in states.items() if state == "parked"]
    records = [ledger.get(lead) for lead in parked]
    delivered_before = sandbox.stats()["contacts"]["count"]
    print(f"\nREAUTH revoked after {REVOKE_AFTER}; before auth device: {dict(counts)}, "
          f"contacts {delivered_before}")
    assert parked, "no lead was left to park: the revocation came too late to test anything"
    assert {r.get("park_reason") for r in records} == {"reauth"}
    assert max(int(r.get("attempts", 0) or 0) for r in records) == 0  # no budget spent
    assert redis_client.hlen(Keys().dead_letters) == 0
    assert delivered_before == counts["delivered"]

    result = subprocess.run([leadsync_bin("leadsync"), "auth", "device"], env=run.env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    run.wait_settled(lead_ids, 120)

    stats = sandbox.stats()
    print(f"REAUTH after auth device: contacts {stats['contacts']}, invalid_grant "
          f"{stats['invalid_grant']}, 401 {stats['unauthorized_401']}, refreshes "
          f"{stats['refreshes']}, sign_up_form {stats['sign_up_form']}")
    assert stats["contacts"]["count"] == LEADS
    assert stats["contacts"]["created"] == LEADS
    assert stats["sign_up_form"]["max_calls_per_contact"] == 1  # exactly once each
    # A 429 may happen on a loaded machine (bunched arrivals); it must not spend retry budget.
    assert [lead for lead in lead_ids if int(ledger.get(lead).get("attempts", 0) or 0)] == []
    assert token_state(Account(settings, redis_client).tokens) == "ok"
    assert redis_client.hlen(Keys().dead_letters) == 0
