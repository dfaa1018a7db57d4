"""When to refresh: the lead before `exp` follows the token's lifetime and the beat interval.

The beat checks the token every LEADSYNC_REFRESH_INTERVAL_S, and its tick may wait behind leads
for a free pool process. To be sure a tick comes before expiry, the refresh is due when less than

    beat lead = max(REFRESH_MARGIN_RATIO x lifetime, 2 x REFRESH_INTERVAL_S + HTTP_TIMEOUT_S)

is left (two intervals: a tick that waited a whole interval, then the next one; plus one token
request). With Constant Contact's 24 h tokens that is the margin (6 h at 0.25). When the lifetime
is not longer than the beat lead (10 s tokens with a 30 s beat), no beat schedule can serve it:
the refresh is due at SHORT_LIVED_SHARE of the lifetime instead, and the workers that read the
token ask for it themselves (`access.usable_access_token` -> `request_refresh`).

A token is never sent with EXPIRY_SKEW_S or less left, and that is checked twice: when the
lead starts, and again right before each request, after the fleet limiter's wait (which can last
several seconds: a 10 s token read with 4 s left was refused 12 times in two minutes when only
the first check existed; docs/notes/tokens.md).
"""

from __future__ import annotations

from worker.base.settings import Settings

SHORT_LIVED_SHARE = 0.5  # short-lived tokens: refresh with half the lifetime left
EXPIRY_SKEW_S = 1.0  # a token with less left than this is treated as expired (never sent)


def beat_lead_s(settings: Settings, lifetime_s: float) -> float:
    return max(settings.refresh_margin_ratio * lifetime_s,
               2 * settings.refresh_interval_s + settings.http_timeout_s)


def beat_can_serve(settings: Settings, lifetime_s: float) -> bool:
    """True when beat ticks alone refresh this token before it expires."""
    return beat_lead_s(settings, lifetime_s) < lifetime_s


def refresh_lead_s(settings: Settings, lifetime_s: float) -> float:
    """Refresh when less than this many seconds of the access token are left."""
    if beat_can_serve(settings, lifetime_s):
        return beat_lead_s(settings, lifetime_s)
    return max(settings.refresh_margin_ratio, SHORT_LIVED_SHARE) * lifetime_s

