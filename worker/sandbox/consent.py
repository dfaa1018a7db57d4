"""The small HTML pages a person sees: consent (Approve / Deny) and device verification."""

from __future__ import annotations

from html import escape

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}"
          "button{font-size:1rem;padding:.5rem 1.5rem;margin-right:.5rem}"
          "input{font-size:1.2rem;letter-spacing:.1em;padding:.3rem}.note{color:#666}")


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}"
            "<p class='note'>leadsync sandbox: a local stand-in for Constant Contact.</p>"
            "</body></html>")


def consent_page(request_id: str, client_id: str, scopes: list[str]) -> str:
    items = "".join(f"<li>{escape(scope)}</li>" for scope in scopes)
    return _page("Authorize access", (
        f"<p><b>{escape(client_id)}</b> asks for access to your Constant Contact account:</p>"
        f"<ul>{items}</ul>"
        "<form method='post' action='/oauth2/default/v1/authorize/decision'>"
        f"<input type='hidden' name='request_id' value='{escape(request_id)}'>"
        "<button name='decision' value='approve'>Approve</button>"
        "<button name='decision' value='deny'>Deny</button></form>"))


def device_page(user_code: str = "", message: str = "") -> str:
    note = f"<p><b>{escape(message)}</b></p>" if message else ""
    return _page("Activate your device", (
        f"{note}<p>Enter the code shown on your device, then approve or deny.</p>"
        "<form method='post' action='/activate'>"
        f"<p><input name='user_code' value='{escape(user_code)}' autocomplete='off'></p>"
        "<button name='decision' value='approve'>Approve</button>"
        "<button name='decision' value='deny'>Deny</button></form>"))


def result_page(title: str, message: str) -> str:
    return _page(title, f"<p>{escape(message)}</p>")


def error_page(message: str) -> str:
    return _page("Authorization error", f"<p>{escape(message)}</p>")
