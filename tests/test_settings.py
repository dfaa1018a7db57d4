"""Settings: defaults, overrides from the environment, one-line errors naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker.base.errors import ConfigError
from worker.base.settings import load_settings


def test_defaults_point_at_real_constant_contact() -> None:
    settings = load_settings(_env_file=None)
    assert settings.api_base_url == "https://api.cc.email/v3"
    assert settings.token_url == "https://authz.constantcontact.com/oauth2/default/v1/token"
    assert settings.authorize_url.endswith("/oauth2/default/v1/authorize")
    assert settings.device_authorization_url.endswith("/oauth2/default/v1/device/authorize")
    assert settings.jwks_url == (
        "https://identity.constantcontact.com/oauth2/aus1lm3ry9mF7x2Ja0h8/v1/keys"
    )
    assert settings.scopes.split() == ["contact_data", "offline_access"]


def test_every_endpoint_is_overridable_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = ["API_BASE_URL", "AUTHORIZE_URL", "TOKEN_URL", "DEVICE_AUTHORIZATION_URL", "JWKS_URL"]
    for name in names:
        monkeypatch.setenv(f"LEADSYNC_{name}", f"http://127.0.0.1:9/{name.lower()}")
    settings = load_settings(_env_file=None)
    for name in names:
        assert getattr(settings, name.lower()) == f"http://127.0.0.1:9/{name.lower()}"


def test_secrets_are_secretstr_and_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSYNC_CLIENT_SECRET", "s3cr3t-value")
    settings = load_settings(_env_file=None)
    assert settings.client_secret is not None
    assert settings.client_secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(settings)


def test_list_ids_accept_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSYNC_LIST_IDS", "a1, b2,c3")
    assert load_settings(_env_file=None).list_ids == ["a1", "b2", "c3"]


def test_env_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LEADSYNC_CLIENT_ID=from-dotenv\n")
    assert load_settings(_env_file=str(env_file)).client_id == "from-dotenv"


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSYNC_RATE_LIMIT_PER_S", "fast")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value).startswith("LEADSYNC_RATE_LIMIT_PER_S:")
    assert "\n" not in str(caught.value)


def test_backoff_may_exceed_the_visibility_timeout() -> None:
    # Retries wait in Redis's schedule, not in the broker: an hour's backoff is no longer tied
    # to the visibility timeout.
    settings = load_settings(_env_file=None, backoff_max_s=4000, visibility_timeout_s=60)
    assert settings.backoff_max_s > settings.visibility_timeout_s


def test_celery_start_up_fails_with_one_line_on_bad_config(tmp_path) -> None:
    env = {"LEADSYNC_DAILY_QUOTA": "-5", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", "import worker.celery"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        proc.stderr.strip().splitlines()[0]
    ]
    assert "LEADSYNC_DAILY_QUOTA" in proc.stderr
