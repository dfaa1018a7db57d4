"""Named exit codes, one per kind of failure a script or probe may want to tell apart."""

from __future__ import annotations

from enum import IntEnum

from worker.base import errors


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    CONFIG = 3
    REDIS_UNAVAILABLE = 4
    NOT_AUTHORIZED = 5
    REAUTH_REQUIRED = 6
    ACCESS_DENIED = 7
    EXPIRED = 8
    UNHEALTHY = 9
    INVALID_INPUT = 10
    INTERRUPTED = 130


_BY_ERROR: list[tuple[type[errors.LeadsyncError], ExitCode]] = [
    (errors.ConfigError, ExitCode.CONFIG),
    (errors.RedisUnavailableError, ExitCode.REDIS_UNAVAILABLE),
    (errors.NotAuthorizedError, ExitCode.NOT_AUTHORIZED),
    (errors.ReauthRequiredError, ExitCode.REAUTH_REQUIRED),
    (errors.InvalidLeadError, ExitCode.INVALID_INPUT),
]


def exit_code_for(exc: errors.LeadsyncError) -> ExitCode:
    for kind, code in _BY_ERROR:
        if isinstance(exc, kind):
            return code
    return ExitCode.FAILURE
