"""The ``[vobiz]`` settings, read from ``AIRFLOW__VOBIZ__*`` environment variables."""

from __future__ import annotations

import os

import pytest

from vobiz_provider.config import (
    MissingCallbackSecretError,
    VobizSettings,
    get_settings,
    resolve_callback_base_url,
)
from vobiz_provider.exceptions import WeakCallbackSecretError

_KEYS = (
    "CALLBACK_BASE_URL",
    "CALLBACK_SECRET",
    "CALLBACK_SECRET_FALLBACKS",
    "CALLBACK_STORE",
    "REQUIRE_SIGNATURES",
    "MAX_BODY_BYTES",
    "NONCE_WINDOW",
    "MAX_CALLBACKS_PER_CALL",
    "SIGNATURE_CONN_IDS",
    "POLL_INTERVAL",
    "CALLBACK_RATE_LIMIT",
    "CALLBACK_RATE_BURST",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in _KEYS:
        monkeypatch.delenv(f"AIRFLOW__VOBIZ__{key}", raising=False)
    return monkeypatch


class _EmptyConfig:
    """A configuration with no ``[vobiz]`` options at all: every look-up returns its fallback."""

    def get(self, section: str, key: str, fallback: object = None) -> object:
        return fallback

    getboolean = getint = getfloat = get


NEW = "new-callback-secret-0123456789abcdef"
OLD1 = "old-callback-secret-1-0123456789abcdef"
OLD2 = "old-callback-secret-2-0123456789abcdef"


def test_defaults_without_any_configuration(clean_env: pytest.MonkeyPatch) -> None:
    settings = VobizSettings.from_config(_EmptyConfig())  # type: ignore[arg-type]
    assert settings == VobizSettings()
    assert settings.callback_base_url is None
    assert settings.callback_secret is None
    assert settings.require_signatures is True  # secure by default: the callback URLs carry credentials
    assert settings.max_body_bytes == 65536
    assert settings.nonce_window == 7 * 86400.0
    assert settings.max_callbacks_per_call == 50
    assert settings.signature_conn_ids == ("vobiz_default",)
    assert settings.poll_interval == 5.0
    assert settings.callback_rate_limit == 50.0
    assert settings.callback_rate_burst == 5000
    home = os.path.abspath(os.environ["AIRFLOW_HOME"])
    assert settings.callback_store == f"sqlite:///{home}/vobiz_callbacks.db"


def test_airflow_configuration_is_read_without_env(clean_env: pytest.MonkeyPatch) -> None:
    # Whatever defaults the provider metadata declares, the effective values come from Airflow's conf.
    from airflow.configuration import conf

    settings = get_settings()
    assert settings.max_body_bytes == conf.getint("vobiz", "max_body_bytes", fallback=65536)
    assert settings.require_signatures == conf.getboolean("vobiz", "require_signatures", fallback=True)
    assert settings.callback_secret is None


def test_values_from_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", "https://hooks.example.com/vobiz/")
    clean_env.setenv("AIRFLOW__VOBIZ__CALLBACK_SECRET", NEW)
    clean_env.setenv("AIRFLOW__VOBIZ__CALLBACK_SECRET_FALLBACKS", f"{OLD1}, {OLD2}")
    clean_env.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", "postgresql://u@db/vobiz")
    clean_env.setenv("AIRFLOW__VOBIZ__REQUIRE_SIGNATURES", "False")  # the documented switch
    clean_env.setenv("AIRFLOW__VOBIZ__MAX_BODY_BYTES", "1024")
    clean_env.setenv("AIRFLOW__VOBIZ__NONCE_WINDOW", "1209600")
    clean_env.setenv("AIRFLOW__VOBIZ__MAX_CALLBACKS_PER_CALL", "20")
    clean_env.setenv("AIRFLOW__VOBIZ__SIGNATURE_CONN_IDS", "vobiz_default, vobiz_sub ,")
    clean_env.setenv("AIRFLOW__VOBIZ__POLL_INTERVAL", "0.5")
    clean_env.setenv("AIRFLOW__VOBIZ__CALLBACK_RATE_LIMIT", "2.5")
    clean_env.setenv("AIRFLOW__VOBIZ__CALLBACK_RATE_BURST", "100")
    settings = get_settings()
    assert settings.callback_base_url == "https://hooks.example.com/vobiz/"
    assert settings.signing_secret == NEW
    assert settings.verification_secrets == (NEW, OLD1, OLD2)
    assert settings.callback_store == "postgresql://u@db/vobiz"
    assert settings.require_signatures is False
    assert settings.max_body_bytes == 1024
    assert settings.nonce_window == 1209600.0
    assert settings.max_callbacks_per_call == 20
    assert settings.signature_conn_ids == ("vobiz_default", "vobiz_sub")
    assert settings.poll_interval == 0.5
    assert settings.callback_rate_limit == 2.5
    assert settings.callback_rate_burst == 100


def test_reads_fresh_each_call(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIRFLOW__VOBIZ__POLL_INTERVAL", "2")
    assert get_settings().poll_interval == 2.0
    clean_env.setenv("AIRFLOW__VOBIZ__POLL_INTERVAL", "3")
    assert get_settings().poll_interval == 3.0


def test_missing_secret_names_the_option(clean_env: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    with pytest.raises(MissingCallbackSecretError, match=r"\[vobiz\] callback_secret"):
        _ = settings.signing_secret
    with pytest.raises(ValueError, match=r"\[vobiz\] callback_secret"):
        _ = settings.verification_secrets


def test_secret_not_in_repr(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIRFLOW__VOBIZ__CALLBACK_SECRET", "very-private-value")
    clean_env.setenv("AIRFLOW__VOBIZ__CALLBACK_STORE", "postgresql://u:dbpassword@db/vobiz")
    text = repr(get_settings())
    assert "very-private-value" not in text
    assert "dbpassword" not in text


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        VobizSettings(poll_interval=0)
    with pytest.raises(ValueError, match="max_body_bytes"):
        VobizSettings(max_body_bytes=-1)
    with pytest.raises(ValueError, match="callback_rate_limit"):
        VobizSettings(callback_rate_limit=float("nan"))
    with pytest.raises(ValueError, match="callback_rate_burst"):
        VobizSettings(callback_rate_burst=0)
    with pytest.raises(ValueError, match="max_callbacks_per_call"):
        VobizSettings(max_callbacks_per_call=0)


def test_a_nonce_window_shorter_than_a_callback_url_lives_is_refused() -> None:
    # Vobiz's signatures never expire: a nonce forgotten while a URL is valid lets a signature be replayed.
    with pytest.raises(ValueError, match="nonce_window must be at least 172800"):
        VobizSettings(nonce_window=300)
    assert VobizSettings(nonce_window=172800).nonce_window == 172800


@pytest.mark.parametrize("weak", ["dev-secret", "x" * 31, "é" * 15])
def test_a_short_callback_secret_is_refused_with_how_to_make_one(weak: str) -> None:
    settings = VobizSettings(callback_secret=weak)
    for use in ("signing_secret", "verification_secrets"):
        with pytest.raises(WeakCallbackSecretError) as info:
            getattr(settings, use)
        assert "shorter than 32 bytes" in str(info.value)
        assert "secrets.token_urlsafe(32)" in str(info.value)
        assert weak not in str(info.value)
        assert isinstance(info.value, MissingCallbackSecretError)  # refused like a missing secret
    assert VobizSettings(callback_secret="x" * 32).signing_secret == "x" * 32


def test_a_short_fallback_secret_is_refused() -> None:
    settings = VobizSettings(callback_secret=NEW, callback_secret_fallbacks=("dev-secret",))
    assert settings.signing_secret == NEW  # signing still works
    with pytest.raises(WeakCallbackSecretError, match="callback_secret_fallbacks is shorter than 32"):
        _ = settings.verification_secrets


def test_connection_extra_overrides_config() -> None:
    settings = VobizSettings(callback_base_url="https://config.example.com/vobiz/")
    assert resolve_callback_base_url("https://conn.example.com/vobiz/", settings) == (
        "https://conn.example.com/vobiz"
    )
    assert resolve_callback_base_url(None, settings) == "https://config.example.com/vobiz"
    assert resolve_callback_base_url("  ", settings) == "https://config.example.com/vobiz"
    assert resolve_callback_base_url(None, VobizSettings()) is None


def test_base_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="callback_base_url"):
        resolve_callback_base_url("hooks.example.com/vobiz", VobizSettings())


def test_resolve_reads_config_when_no_settings_given(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIRFLOW__VOBIZ__CALLBACK_BASE_URL", "http://127.0.0.1:8080/vobiz")
    assert resolve_callback_base_url(None) == "http://127.0.0.1:8080/vobiz"
