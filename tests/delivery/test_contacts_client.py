"""The API client: every error shape and every `requests` failure becomes a leadsync error."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from worker.base import errors
from worker.delivery.contacts import ContactsClient, error_fields, error_for, retry_after_s
from worker.delivery.outcome import POLICY, Action, classify


class CannedAdapter(BaseAdapter):
    """A transport that answers every request with one canned response or exception."""

    def __init__(self, status: int = 200, body: Any = None, *, headers: dict[str, str] | None
                 = None, raises: Exception | None = None) -> None:
        super().__init__()
        self.status, self.body, self.headers, self.raises = status, body, headers or {}, raises
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest,  # type: ignore[override]  # extra transport options are not used by a canned answer
             **_: Any) -> requests.Response:
        self.sent.append(request)
        if self.raises is not None:
            raise self.raises
        response = requests.Response()
        response.status_code = self.status
        text = self.body if isinstance(self.body, str) else json.dumps(self.body)
        response._content = text.encode()
        response.headers.update({"Content-Type": "application/json", **self.headers})
        response.request = request
        return response

    def close(self) -> None:
        return None


def client_for(make_settings: Any, adapter: CannedAdapter, gate: Any = None) -> ContactsClient:
    session = requests.Session()
    session.mount("http://", adapter)
    settings = make_settings(api_base_url="http://cc.invalid/v3")
    if gate is None:
        return ContactsClient(settings, session=session)
    return ContactsClient(settings, session=session, before_request=gate)


ARRAY_400 = [{"error_key": "contacts.api.validation.error",
              "error_message": "email_address: mary@x.example is not valid"}]


@pytest.mark.parametrize(("status", "body", "kind", "action"), [
    (400, ARRAY_400, errors.PermanentAPIError, Action.DEAD_LETTER),
    (401, {"error_key": "unauthorized", "error_message": "Unauthorized"},
     errors.UnauthorizedError, Action.REFRESH),
    (403, [{"error_key": "forbidden", "error_message": "Forbidden"}],
     errors.PermanentAPIError, Action.DEAD_LETTER),
    (404, [{"error_key": "contacts.api.not_found", "error_message": "nope"}],
     errors.PermanentAPIError, Action.DEAD_LETTER),
    (409, [{"error_key": "contacts.api.conflict", "error_message": "Email already exists"}],
     errors.ConflictError, Action.RETRY),
    (415, [{"error_key": "unsupported", "error_message": "Unsupported Media Type"}],
     errors.PermanentAPIError, Action.DEAD_LETTER),
    (429, {"error_key": "throttled", "error_message": "Too Many Requests"},
     errors.ThrottledError, Action.WAIT),
    (429, {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"},
     errors.QuotaExceededError, Action.PARK_QUOTA),
    (500, "<html>oops</html>", errors.TransientAPIError, Action.RETRY),
    (503, {"error": "temporarily_unavailable", "error_description": "down"},
     errors.TransientAPIError, Action.RETRY),
])
def test_each_answer_maps_to_one_error_and_one_action(
    make_settings: Any, status: int, body: Any, kind: type[Exception], action: Action
) -> None:
    client = client_for(make_settings, CannedAdapter(status, body))
    with pytest.raises(kind) as caught:
        client.sign_up_form("tok", {"email_address": "a@b.example"})
    assert type(caught.value) is kind
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    assert classify(caught.value).action is action
    assert "mary@x.example" not in str(caught.value)  # personal data scrubbed


@pytest.mark.parametrize("failure", [
    requests.Timeout("read timed out"), requests.ConnectionError("refused"),
    requests.exceptions.ChunkedEncodingError("cut"), requests.exceptions.InvalidURL("bad"),
])
def test_requests_failures_never_escape_and_are_retried(make_settings: Any,
                                                        failure: Exception) -> None:
    client = client_for(make_settings, CannedAdapter(raises=failure))
    with pytest.raises(errors.TransientAPIError) as caught:
        client.find_by_email("tok", "a@b.example")
    assert not isinstance(caught.value, requests.RequestException)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert classify(caught.value).action is Action.RETRY


def test_every_leadsync_error_has_a_policy_row() -> None:
    def subclasses(cls: type) -> list[type]:
        found: list[type] = [cls]
        sub: type
        for sub in cls.__subclasses__():
            found += subclasses(sub)
        return found

    import worker.auth.token_key  # noqa: F401  # every module that defines an error is loaded

    for kind in subclasses(errors.LeadsyncError):
        # The HTTP intake answers its own errors as responses; they never reach a delivery.
        if kind is errors.LeadsyncError or kind.__module__.startswith("worker.intake"):
            continue
        row = next(row for row in POLICY if issubclass(kind, row[0]))
        assert row[0] is not Exception, f"{kind.__name__} falls through to the catch-all"


def test_the_three_error_shapes_are_read() -> None:
    assert error_fields(ARRAY_400)[0] == "contacts.api.validation.error"
    assert error_fields({"error_key": "throttled", "error_message": "x"}) == ("throttled", "x")
    assert error_fields({"error": "invalid_grant", "error_description": "d"}) == (
        "invalid_grant", "d")
    assert error_fields("plain") == (None, "plain")


def test_retry_after_is_honoured_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Thu, 01 Jan 2099 00:00:10 GMT", now=4070908800.0) == 10.0
    assert retry_after_s("soon") is None
    err = error_for(503, "", retry_after=12.0)
    assert classify(err).retry_after_s == 12.0


def test_success_returns_the_answer_and_sends_a_bearer_token(make_settings: Any) -> None:
    adapter = CannedAdapter(201, {"contact_id": "c-1", "action": "created"})
    gated: list[bool] = []
    client = client_for(make_settings, adapter, gate=gated.append)
    assert client.sign_up_form("tok-1", {"email_address": "a@b.example"}) == (
        201, {"contact_id": "c-1", "action": "created"})
    assert adapter.sent[0].headers["Authorization"] == "Bearer tok-1"
    assert adapter.sent[0].url == "http://cc.invalid/v3/contacts/sign_up_form"
    assert gated == [False]  # every request passed the limiter first


def test_custom_fields_follow_the_cursor_from_the_reserve(make_settings: Any) -> None:
    pages = iter([
        {"custom_fields": [{"custom_field_id": "f1", "name": "a"}],
         "_links": {"next": {"href": "/v3/contact_custom_fields?cursor=abc"}}},
        {"custom_fields": [{"custom_field_id": "f2", "name": "b"}]},
    ])

    class Paged(CannedAdapter):
        def send(self, request: requests.PreparedRequest,  # type: ignore[override]  # as above
                 **kw: Any) -> requests.Response:
            self.body = next(pages)
            return super().send(request, **kw)

    adapter = Paged()
    gated: list[bool] = []
    fields = client_for(make_settings, adapter, gate=gated.append).custom_fields("tok")
    assert [f["custom_field_id"] for f in fields] == ["f1", "f2"]
    assert adapter.sent[1].url == "http://cc.invalid/v3/contact_custom_fields?cursor=abc"
    assert gated == [True, True]
