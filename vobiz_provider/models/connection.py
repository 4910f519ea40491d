"""``VobizConnectionConfig``: a ``vobiz`` connection's fields, validated.

The connection holds the Auth ID in ``login``, the Auth Token in ``password`` and everything else as extras
(``base_url``, ``callback_base_url``, ``timeout``, ``max_retries``, ``cps``, ``timezone``; declared as
``conn-fields`` in :mod:`vobiz_provider.get_provider_info`). The hook builds its clients from it and the
callback receiver reads the auth tokens that verify Vobiz's signatures from it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from vobiz_provider.config import DEFAULT_BASE_URL
from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.untrusted import quoted

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["EXTRA_FIELDS", "VobizConnectionConfig"]

EXTRA_FIELDS = (
    "base_url",
    "callback_base_url",
    "timeout",
    "max_retries",
    "cps",
    "timezone",
    "main_account_auth_token",
)
#: Extras whose value is a secret: a message about them never quotes it.
_SECRET_EXTRAS = frozenset({"main_account_auth_token"})
_LEGACY_PREFIX = "extra__vobiz__"
_AUTH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]*$")
_WHERE = {"auth_id": "login (Auth ID)", "auth_token": "password (Auth Token)"}


def _http_url(value: Any, *, name: str) -> Any:
    if value is None:
        return None
    text = str(value).strip()
    if not re.match(r"^https?://[^/\s?#]+", text) or any(ch.isspace() for ch in text):
        raise ValueError(f"must be an absolute http:// or https:// URL, e.g. {_EXAMPLES[name]}")
    return text.rstrip("/")


_EXAMPLES = {"base_url": DEFAULT_BASE_URL, "callback_base_url": "https://airflow.example.com/vobiz"}


class VobizConnectionConfig(BaseModel):
    """A ``vobiz`` connection, validated.

    :param auth_id: Vobiz Auth ID (connection ``login``).
    :param auth_token: Vobiz Auth Token (connection ``password``); never shown.
    :param base_url: API root including ``/api/v1``.
    :param callback_base_url: Public URL of the callback receiver root, if set on the connection.
    :param timeout: Timeout of each HTTP request, seconds.
    :param max_retries: Retries of failed requests.
    :param cps: Account calls-per-second limit used to pace calls; ``None`` disables pacing.
    :param timezone: Console timezone in which Vobiz writes callback local times.
    :param main_account_auth_token: For a sub-account (``SA_...``): the main account's Auth Token, which
        signs the ``X-Vobiz-Signature-MA-V2/V3`` headers of its callbacks; never shown.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    auth_id: str = Field(min_length=1)
    auth_token: SecretStr
    base_url: str = DEFAULT_BASE_URL
    callback_base_url: str | None = None
    timeout: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=20)
    cps: float | None = Field(default=None, gt=0)
    timezone: str = "UTC"
    main_account_auth_token: SecretStr | None = None

    @field_validator("auth_id")
    @classmethod
    def _check_auth_id(cls, value: str) -> str:
        value = value.strip()
        if not _AUTH_ID.match(value):
            raise ValueError("must be a Vobiz Auth ID such as MA_XXXXXXXX (letters, digits, '_', '-', '.')")
        return value

    @field_validator("auth_token", "main_account_auth_token")
    @classmethod
    def _check_auth_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"^[\x21-\x7e]+$", value.get_secret_value()):
            raise ValueError("must be an Auth Token: visible ASCII characters, no spaces")
        return value

    @field_validator("base_url", "callback_base_url", mode="before")
    @classmethod
    def _check_url(cls, value: Any, info: Any) -> Any:
        return _http_url(value, name=info.field_name)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        import pendulum

        value = value.strip()
        try:
            pendulum.timezone(value)
        except Exception:
            raise ValueError("must be an IANA timezone name such as UTC or Asia/Kolkata") from None
        return value

    @classmethod
    def from_connection(
        cls, *, conn_id: str, login: str | None, password: str | None, extra: Mapping[str, Any]
    ) -> VobizConnectionConfig:
        """Validate a connection's fields; empty extras take their defaults.

        :param conn_id: The connection id (for messages).
        :param login: The Auth ID.
        :param password: The Auth Token.
        :param extra: The connection extras (plain names; ``extra__vobiz__<name>`` is accepted too).
        :raises VobizValidationError: naming every missing or malformed field (never echoing the token).
        """
        values: dict[str, Any] = {}
        for key, value in extra.items():
            name = key.removeprefix(_LEGACY_PREFIX)
            if name in EXTRA_FIELDS and value is not None and value != "":
                values.setdefault(name, value)
        problems = []
        if not login or not str(login).strip():
            problems.append("login (Auth ID) is missing: set it to the account's Auth ID (MA_... or SA_...)")
        if not password:
            problems.append("password (Auth Token) is missing: set it to the account's Auth Token")
        if not problems:
            try:
                return cls(auth_id=str(login), auth_token=SecretStr(str(password)), **values)
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    field = str(error["loc"][0]) if error["loc"] else "?"
                    message = error["msg"].removeprefix("Value error, ")
                    message = message[:1].lower() + message[1:]
                    if field in _WHERE:
                        problems.append(f"{_WHERE[field]}: {message}")
                    elif field in _SECRET_EXTRAS:
                        problems.append(f"extra field {field!r}: {message}")
                    else:
                        problems.append(
                            f"extra field {field!r}: {message} (got {quoted(error.get('input'))})"
                        )
        raise VobizValidationError(f"Vobiz connection {conn_id!r} is misconfigured: " + "; ".join(problems))

    @staticmethod
    def unknown_extras(extra: Mapping[str, Any]) -> list[str]:
        """The extra fields of a connection that are not Vobiz settings (ignored), sorted.

        :param extra: The connection extras.
        """
        return sorted(
            key
            for key in extra
            if key.removeprefix(_LEGACY_PREFIX) not in EXTRA_FIELDS and key != "__extra__"
        )

    def client_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for :class:`~vobiz_provider.client.VobizClient` / its async twin."""
        kwargs: dict[str, Any] = {
            "auth_id": self.auth_id,
            "auth_token": self.auth_token,
            "base_url": self.base_url,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "cps": self.cps,
        }
        kwargs.update(overrides)
        return kwargs
