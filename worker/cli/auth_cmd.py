"""`leadsync auth device|login|import|status|refresh|logout|genkey`: authorize once, by a person.

Every flow ends in the same place: the answer is verified (JWT against the JWKS) and stored as a
new generation; the state becomes ok and any open alert is closed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import webbrowser
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from worker.account import Account
from worker.auth import alerts
from worker.auth.callback import CallbackServer
from worker.auth.grant import store_authorization, store_imported_refresh_token
from worker.auth.oauth_client import OAuthClient, TokenResponse
from worker.auth.pkce import challenge_s256, make_state, make_verifier, same_state
from worker.auth.status import token_status
from worker.auth.token_record import STATE_TOKEN_KEY_INVALID, TokenRecord
from worker.base.errors import OAuthServerError, OAuthTransientError
from worker.cli.exit_codes import ExitCode

EXAMPLES = """examples:
  leadsync auth device                       # headless: open the printed URL on any device
  leadsync auth login --no-browser           # auth code + PKCE, callback on 127.0.0.1:8765
  leadsync auth import --refresh-token-file rt.txt
  printf '%s' "$RT" | leadsync auth import   # from stdin (never as an argument: ps shows argv)
  leadsync auth status --json
  leadsync auth refresh                      # force one refresh through the locked path
  leadsync auth genkey                       # a Fernet key for LEADSYNC_TOKEN_KEY
"""


def _out(text: str) -> None:
    print(text, flush=True)


_warned = False
NO_KEY_WARNING = ("leadsync: warning: LEADSYNC_TOKEN_KEY is not set: tokens (and the account's "
                  "email) are stored in Redis in clear; make a key with `leadsync auth genkey`")


def load_account_warning() -> Account:
    """The Account for an `auth` command; says once (on stderr) when tokens sit in clear."""
    global _warned
    account = Account.load()
    if account.settings.token_key is None and not _warned:
        _warned = True
        print(NO_KEY_WARNING, file=sys.stderr, flush=True)
    return account


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _stored(account: Account, answer: TokenResponse) -> int:
    record = store_authorization(account.tokens, answer, jwks=account.jwks)
    _out(f"authorized: account {record.sub or '?'} (platform_user_id "
         f"{record.platform_user_id or '?'}), scopes {record.scopes or '-'}, "
         f"generation {record.generation}")
    return int(ExitCode.OK)


# --- device flow (RFC 8628) -------------------------------------------------------------
def _device(args: argparse.Namespace) -> int:
    account = load_account_warning()
    client = OAuthClient(account.settings)
    grant = client.device_authorize()
    _out(f"Open {grant.verification_uri} and enter the code: {grant.user_code}")
    if grant.verification_uri_complete:
        _out(f"Or open: {grant.verification_uri_complete}")
    _out(f"Waiting for approval (expires in {grant.expires_in:.0f} s)...")
    interval = grant.interval
    deadline = time.monotonic() + grant.expires_in
    while time.monotonic() < deadline:
        time.sleep(min(interval, max(deadline - time.monotonic(), 0)))
        try:
            return _stored(account, client.poll_device(grant.device_code))
        except OAuthTransientError as exc:
            interval = min(interval * 2, 60)  # server trouble: poll less often, keep waiting
            _out(f"authorization server unavailable ({exc.error}); still waiting")
        except OAuthServerError as exc:
            if exc.error == "authorization_pending":
                continue
            if exc.error == "slow_down":
                interval += 5  # RFC 8628 section 3.5
                continue
            if exc.error == "access_denied":
                print("leadsync: authorization was denied on the verification page",
                      file=sys.stderr)
                return int(ExitCode.ACCESS_DENIED)
            if exc.error == "expired_token":
                break
            raise
    print("leadsync: the device code expired before approval; run `leadsync auth device` again",
          file=sys.stderr)
    return int(ExitCode.EXPIRED)


# --- authorization code + PKCE ----------------------------------------------------------
def _login(args: argparse.Namespace) -> int:
    account = load_account_warning()
    settings = account.settings
    client = OAuthClient(settings)
    server = CallbackServer(settings.redirect_uri)
    verifier, state = make_verifier(), make_state()
    url = client.authorize_url(state=state, code_challenge=challenge_s256(verifier),
                               redirect_uri=settings.redirect_uri)
    _out(f"Open this URL to authorize leadsync:\n{url}")
    if not args.no_browser:
        try:
            opened = webbrowser.open(url)
        except webbrowser.Error:
            opened = False
        if not opened:
            _out("(no browser found here: open the URL above on this machine)")
    result = server.wait(args.timeout)
    if result is None:
        print(f"leadsync: no callback within {args.timeout:g} s", file=sys.stderr)
        return int(ExitCode.EXPIRED)
    params = result.params
    if not same_state(state, params.get("state")):
        print("leadsync: the callback's state does not match this login (possible forgery); "
              "nothing stored", file=sys.stderr)
        return int(ExitCode.FAILURE)
    if params.get("error"):
        code = ExitCode.ACCESS_DENIED if params["error"] == "access_denied" else ExitCode.FAILURE
        print(f"leadsync: authorization failed: {params['error']}", file=sys.stderr)
        return int(code)
    if not params.get("code"):
        print("leadsync: the callback carried no authorization code", file=sys.stderr)
        return int(ExitCode.FAILURE)
    answer = client.exchange_code(code=params["code"], code_verifier=verifier,
                                  redirect_uri=settings.redirect_uri)
    return _stored(account, answer)


# --- import, refresh, status, logout, genkey --------------------------------------------
def _import(args: argparse.Namespace) -> int:
    account = load_account_warning()
    if args.refresh_token_file:
        token = Path(args.refresh_token_file).read_text().strip()
    else:
        if sys.stdin.isatty():
            _out("Paste the refresh token, then press Enter:")
        token = sys.stdin.readline().strip()
    if not token:
        print("leadsync: no refresh token given", file=sys.stderr)
        return int(ExitCode.INVALID_INPUT)
    store_imported_refresh_token(account.tokens, token)
    return _report(account.refresh(force=True, lock_wait_s=account.settings.refresh_lock_ttl_s))


def _refresh(args: argparse.Namespace) -> int:
    account = load_account_warning()
    return _report(account.refresh(force=True, lock_wait_s=account.settings.refresh_lock_ttl_s))


def _report(outcome: Any) -> int:
    codes = {"refreshed": ExitCode.OK, "already_refreshed": ExitCode.OK,
             "not_authorized": ExitCode.NOT_AUTHORIZED,
             "reauth_required": ExitCode.REAUTH_REQUIRED}
    detail = f": {outcome.detail}" if outcome.detail else ""
    line = f"{outcome.action} (generation {outcome.generation}){detail}"
    code = codes.get(outcome.action, ExitCode.FAILURE)
    print(line if code == ExitCode.OK else f"leadsync: {line}",
          file=sys.stdout if code == ExitCode.OK else sys.stderr)
    return int(code)


def _status(args: argparse.Namespace) -> int:
    info = token_status(load_account_warning().tokens)
    if args.json:
        _out(json.dumps(info, indent=2, sort_keys=True))
    else:
        left = info.get("access_token_seconds_left")
        rows = [
            ("state", info["state"] + (f" ({info['state_reason']})" if info.get("state_reason")
                                       else "")),
            ("account", f"{info.get('sub') or '-'} (platform_user_id "
                        f"{info.get('platform_user_id') or '-'})"),
            ("scopes", " ".join(info.get("scopes") or []) or "-"),
            ("access token expires", f"{_when(info.get('access_token_expires_at'))}"
                                     + (f" ({left:.0f} s left)" if left is not None else "")),
            ("refresh token mode", info.get("refresh_token_mode", "-")),
            ("generation", str(info.get("generation", 0))),
            ("last refresh", _when(info.get("last_refresh_at"))),
            ("next planned refresh", _when(info.get("next_refresh_at"))),
            ("tokens at rest", at_rest_line(info)),
        ]
        if info.get("beat_serves_lifetime") is False:
            rows.append(("refresh timing", "lifetime shorter than the beat can serve: "
                                           "workers ask for the refresh before expiry"))
        if info.get("refresh_in_flight_since"):
            rows.append(("refresh in flight", f"since {_when(info['refresh_in_flight_since'])}"))
        if info["state"] == STATE_TOKEN_KEY_INVALID:
            rows = [*rows[:2], ("tokens at rest", at_rest_line(info))]
        rows += [("token key incident", incident_line(item))
                 for item in info.get("token_key_incidents") or []]
        for name, value in rows:
            _out(f"{name + ':':<22} {value}")
    codes = {"ok": ExitCode.OK, "refresh_failing": ExitCode.OK,
             "not_authorized": ExitCode.NOT_AUTHORIZED,
             "reauth_required": ExitCode.REAUTH_REQUIRED,
             STATE_TOKEN_KEY_INVALID: ExitCode.CONFIG}
    return int(codes[info["state"]])


def at_rest_line(info: dict[str, Any]) -> str:
    """`clear`, `encrypted (key <fp>)`, with what to do when that is not what the key says."""
    at_rest = info.get("tokens_at_rest", "none")
    if not info.get("token_key_set"):
        return f"{at_rest} (LEADSYNC_TOKEN_KEY not set)" if at_rest != "clear" else (
            "clear (LEADSYNC_TOKEN_KEY not set; `leadsync auth genkey` makes one)")
    if at_rest in ("clear", "partly clear"):
        return (f"{at_rest}: encrypted with LEADSYNC_TOKEN_KEY at the next write (now: "
                "`leadsync auth refresh`)")
    return f"{at_rest} (LEADSYNC_TOKEN_KEY {info.get('token_key')})"


def incident_line(item: dict[str, Any]) -> str:
    return (f"key {item['token_key']} cannot open the tokens since {_when(item['since'])} "
            f"(last {_when(item['last_seen'])}): fix LEADSYNC_TOKEN_KEY where it runs")


def _logout(args: argparse.Namespace) -> int:
    account = load_account_warning()
    store = account.tokens
    record = store.read() or TokenRecord()
    client = OAuthClient(account.settings)
    revoked = []
    for token, hint in ((record.refresh_token, "refresh_token"),
                        (record.access_token, "access_token")):
        if not token:
            continue
        try:
            if client.revoke(token, hint):
                revoked.append(hint)
        except OAuthTransientError as exc:
            _out(f"could not revoke the {hint} ({exc.error}); deleting it locally anyway")
    store.delete()
    alerts.clear_alert(account)
    _out(f"logged out: stored tokens deleted; revoked: {', '.join(revoked) or 'none'}")
    return int(ExitCode.OK)


def _genkey(args: argparse.Namespace) -> int:
    _out(Fernet.generate_key().decode())
    return int(ExitCode.OK)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "auth", help="authorize once, inspect or refresh the shared token",
        description=__doc__, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    sub.add_parser("device", help="device flow (RFC 8628): works on a headless server"
                   ).set_defaults(handler=_device)
    login = sub.add_parser("login", help="authorization code + PKCE with a local callback")
    login.add_argument("--no-browser", action="store_true", help="only print the URL")
    login.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (300)")
    login.set_defaults(handler=_login)
    imp = sub.add_parser("import", help="store a refresh token from stdin or a file, then "
                         "refresh at once to prove it")
    imp.add_argument("--refresh-token-file", metavar="PATH")
    imp.set_defaults(handler=_import)
    status = sub.add_parser("status", help="state, account, expiry, generation, refreshes")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
    sub.add_parser("refresh", help="force one refresh through the locked path"
                   ).set_defaults(handler=_refresh)
    sub.add_parser("logout", help="revoke (where supported) and delete the stored tokens"
                   ).set_defaults(handler=_logout)
    sub.add_parser("genkey", help="print a new Fernet key for LEADSYNC_TOKEN_KEY"
                   ).set_defaults(handler=_genkey)
