"""Facts 1-4 and 9: authorization code (with and without PKCE), client authentication, codes,
the token answer, the device flow and revocation."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import requests

from tests.fixtures.sandbox import CC, DEVICE_GRANT
from worker.sandbox import SandboxServer

REDIRECT = "http://127.0.0.1:8765/callback"


def _authorize(cc: CC, **params: str) -> requests.Response:
    query = {"client_id": cc.env["LEADSYNC_CLIENT_ID"], "redirect_uri": REDIRECT,
             "response_type": "code", "scope": "contact_data offline_access", "state": "xyz"}
    query.update(params)
    return cc.http.get(cc.env["LEADSYNC_AUTHORIZE_URL"], params=query, allow_redirects=False,
                       timeout=10)


def _code(answer: requests.Response) -> str:
    assert answer.status_code == 302, answer.text
    return parse_qs(urlparse(answer.headers["Location"]).query)["code"][0]


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_fact_01_authorize_redirects_to_registered_uri_with_code_and_state(
        make_cc: Callable[..., CC]) -> None:
    cc = make_cc(authorize=False, auto_approve=True)
    answer = _authorize(cc)
    location = urlparse(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"] and len(query["code"][0]) > 20
    # A loopback client on another port is accepted (RFC 8252); any other URI never is.
    assert _authorize(cc, redirect_uri="http://127.0.0.1:50123/callback").status_code == 302
    for bad in ("https://evil.example/callback", "http://127.0.0.1:8765/other"):
        refused = _authorize(cc, redirect_uri=bad)
        assert refused.status_code == 400 and "Location" not in refused.headers


def test_fact_01_consent_page_denial_redirects_with_access_denied(cc: CC) -> None:
    page = _authorize(cc)  # no auto-approve: a person decides
    assert page.status_code == 200 and "Approve" in page.text and "Deny" in page.text
    request_id = page.text.split("name='request_id' value='")[1].split("'")[0]
    decision_url = cc.env["LEADSYNC_AUTHORIZE_URL"] + "/decision"
    denied = cc.http.post(decision_url, data={"request_id": request_id, "decision": "deny"},
                          allow_redirects=False, timeout=10)
    query = parse_qs(urlparse(denied.headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["error_description"][0]
    assert query["state"] == ["xyz"]
    page = _authorize(cc)
    request_id = page.text.split("name='request_id' value='")[1].split("'")[0]
    approved = cc.http.post(decision_url, data={"request_id": request_id,
                                                "decision": "approve"},
                            allow_redirects=False, timeout=10)
    assert _code(approved)


def test_fact_02_token_params_in_query_or_body_with_basic_auth(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(authorize=False, auto_approve=True)
    for in_query in (True, False):
        code = _code(_authorize(cc))
        answer = cc.token({"grant_type": "authorization_code", "code": code,
                           "redirect_uri": REDIRECT}, in_query=in_query)
        assert answer.status_code == 200, answer.text
        assert answer.json()["token_type"] == "Bearer"


def test_fact_02_wrong_secret_is_invalid_client_401(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(authorize=False, auto_approve=True)
    code = _code(_authorize(cc))
    answer = cc.token({"grant_type": "authorization_code", "code": code,
                       "redirect_uri": REDIRECT}, auth=(cc.env["LEADSYNC_CLIENT_ID"], "nope"))
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client" and "error_description" in answer.json()
    # A server-flow code without any secret is refused too.
    answer = cc.token({"grant_type": "authorization_code", "code": _code(_authorize(cc)),
                       "redirect_uri": REDIRECT, "client_id": cc.env["LEADSYNC_CLIENT_ID"]},
                      auth=None)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_fact_02_pkce_client_sends_client_id_without_secret(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(authorize=False, auto_approve=True)
    for method in ("S256", "plain"):
        verifier, challenge = _pkce()
        if method == "plain":
            challenge = verifier
        code = _code(_authorize(cc, code_challenge=challenge, code_challenge_method=method))
        answer = cc.token({"grant_type": "authorization_code", "code": code,
                           "redirect_uri": REDIRECT, "code_verifier": verifier,
                           "client_id": cc.env["LEADSYNC_CLIENT_ID"]}, auth=None)
        assert answer.status_code == 200, answer.text
        # PKCE refreshes need no secret either.
        refreshed = cc.token({"grant_type": "refresh_token", "client_id":
                              cc.env["LEADSYNC_CLIENT_ID"],
                              "refresh_token": answer.json()["refresh_token"]}, auth=None)
        assert refreshed.status_code == 200, refreshed.text


def _exchange(cc: CC, code: str, **extra: str) -> requests.Response:
    return cc.token({"grant_type": "authorization_code", "code": code,
                     "redirect_uri": REDIRECT, **extra})


def test_fact_03_codes_are_single_use_expire_and_are_bound(make_cc: Callable[..., CC]) -> None:
    cc = make_cc(authorize=False, auto_approve=True)
    code = _code(_authorize(cc))
    assert _exchange(cc, code).status_code == 200
    reused = _exchange(cc, code)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert "authorization code" in reused.json()["error_description"]

    code = _code(_authorize(cc))
    cc.server.advance_clock(300)
    expired = _exchange(cc, code)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"

    code = _code(_authorize(cc, redirect_uri="http://127.0.0.1:9999/callback"))
    wrong_uri = _exchange(cc, code)  # exchanged with the default redirect URI
    assert wrong_uri.status_code == 400 and wrong_uri.json()["error"] == "invalid_grant"

    _verifier, challenge = _pkce()
    code = _code(_authorize(cc, code_challenge=challenge, code_challenge_method="S256"))
    wrong_verifier = _exchange(cc, code, code_verifier=_pkce()[0])
    assert wrong_verifier.status_code == 400 and wrong_verifier.json()["error"] == "invalid_grant"


def test_fact_04_token_answer_shape_and_offline_access(cc: CC) -> None:
    body = cc.authorize()
    assert set(body) == {"token_type", "expires_in", "access_token", "scope", "refresh_token"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86_400
    assert body["scope"] == "contact_data offline_access"
    assert len(body["refresh_token"]) <= 50 and "." not in body["refresh_token"]
    assert body["access_token"].count(".") == 2
    without = cc.authorize(scope="contact_data")
    assert "refresh_token" not in without and without["scope"] == "contact_data"


def _device_poll(cc: CC, device_code: str, advance_s: float = 5.0) -> requests.Response:
    cc.server.advance_clock(advance_s)
    return cc.http.post(cc.env["LEADSYNC_TOKEN_URL"], timeout=10, data={
        "grant_type": DEVICE_GRANT, "device_code": device_code,
        "client_id": cc.env["LEADSYNC_CLIENT_ID"]})


def test_fact_09_device_flow_pending_slow_down_approved(cc: CC) -> None:
    device = cc.device_authorize()
    assert {"device_code", "user_code", "verification_uri", "verification_uri_complete",
            "expires_in", "interval"} <= set(device)
    assert device["verification_uri_complete"].endswith(device["user_code"])
    pending = _device_poll(cc, device["device_code"])
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    too_fast = _device_poll(cc, device["device_code"], advance_s=1.0)
    assert too_fast.json()["error"] == "slow_down"
    # The person approves on the verification page.
    page = cc.http.get(device["verification_uri_complete"], timeout=10)
    assert page.status_code == 200 and device["user_code"] in page.text
    done = cc.http.post(device["verification_uri"], timeout=10,
                        data={"user_code": device["user_code"], "decision": "approve"})
    assert done.status_code == 200
    tokens = _device_poll(cc, device["device_code"], advance_s=10.0)
    assert tokens.status_code == 200 and tokens.json()["refresh_token"]
    again = _device_poll(cc, device["device_code"], advance_s=10.0)
    assert again.json()["error"] == "invalid_grant"


def test_fact_09_device_flow_denied_and_expired(cc: CC) -> None:
    denied = cc.device_authorize()
    cc.server.deny_device(denied["user_code"])
    assert _device_poll(cc, denied["device_code"]).json()["error"] == "access_denied"
    late = cc.device_authorize()
    answer = _device_poll(cc, late["device_code"], advance_s=late["expires_in"] + 1)
    assert answer.status_code == 400 and answer.json()["error"] == "expired_token"


def test_fact_09_auto_approve_grants_on_first_poll(make_sandbox: Callable[..., SandboxServer],
                                                   ) -> None:
    cc = CC(make_sandbox(auto_approve=True))
    device = cc.device_authorize()
    first = _device_poll(cc, device["device_code"], advance_s=0.0)
    assert first.status_code == 200 and first.json()["access_token"]


def test_fact_09_revoke_kills_the_refresh_token(cc: CC) -> None:
    body: dict[str, Any] = cc.authorize()
    answer = cc.http.post(cc.env["LEADSYNC_REVOKE_URL"], auth=cc.basic(), timeout=10,
                          data={"token": body["refresh_token"],
                                "token_type_hint": "refresh_token"})
    assert answer.status_code == 200
    refused = cc.refresh(body["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
