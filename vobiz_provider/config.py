"""The provider-wide settings: the ``[vobiz]`` section (receiver, ledger, correlation tokens, triggers).

Every value is read from Airflow's configuration, so it can come from ``airflow.cfg`` (section ``[vobiz]``)
or from an environment variable ``AIRFLOW__VOBIZ__<KEY>``. :func:`get_settings` reads the configuration
afresh on every call (a handful of dictionary look-ups), so a changed environment variable takes effect at
once and tests need no cache resets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vobiz_provider.exceptions import MissingCallbackSecretError, WeakCallbackSecretError

if TYPE_CHECKING:
    from airflow.configuration import AirflowConfigParser

SECTION = "vobiz"

#: Root of the Vobiz REST API (a connection's ``base_url`` extra overrides it).
DEFAULT_BASE_URL = "https://api.vobiz.ai/api/v1"

DEFAULT_MAX_BODY_BYTES = 65536
#: Vobiz's signatures carry no time: a captured one works again once its nonce is forgotten. Seven days is
#: far longer than any callback URL lives (:func:`vobiz_provider.correlation.token_lifetime`, at most ~26 h).
DEFAULT_NONCE_WINDOW = 7 * 86400.0
#: The shortest ``nonce_window`` accepted: longer than the longest-lived callback URL.
MIN_NONCE_WINDOW = 2 * 86400.0
#: Callbacks stored per dialled destination of one try before the receiver refuses more (429). A call
#: produces about five (ring, answer, machine detection, a gather or two, hangup).
DEFAULT_MAX_CALLBACKS_PER_CALL = 50
#: The shortest ``callback_secret`` accepted, in bytes: shorter ones fall to an offline search from one URL.
MIN_SECRET_BYTES = 32
DEFAULT_POLL_INTERVAL = 5.0
DEFAULT_SIGNATURE_CONN_IDS: tuple[str, ...] = ("vobiz_default",)
# One Make-Call request may have 1,000 destinations sharing one correlation token, each with a ring, an
# answer and a hangup callback (and Vobiz's retries of them) possibly within seconds: the burst covers that,
# the rate a long call campaign of one task try.
DEFAULT_CALLBACK_RATE_LIMIT = 50.0
DEFAULT_CALLBACK_RATE_BURST = 5000
STORE_FILE_NAME = "vobiz_callbacks.db"


def default_store_url() -> str:
    """The default callback store: a SQLite file next to the Airflow metadata DB, in ``AIRFLOW_HOME``."""
    home = os.path.abspath(os.path.expanduser(os.environ.get("AIRFLOW_HOME", "~/airflow")))
    return f"sqlite:///{os.path.join(home, STORE_FILE_NAME)}"


def _split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _optional(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _strong(secret: str, name: str) -> str:
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        raise WeakCallbackSecretError(name, MIN_SECRET_BYTES)
    return secret


@dataclass(frozen=True, kw_only=True)
class VobizSettings:
    """The ``[vobiz]`` configuration section.

    :param callback_base_url: Public URL of the receiver root, e.g. ``https://airflow.example.com/vobiz``.
        A connection's ``callback_base_url`` extra takes precedence (see :func:`resolve_callback_base_url`).
    :param callback_secret: Key of the HMAC that signs correlation tokens. Required to issue or verify them.
    :param callback_secret_fallbacks: Earlier secrets still accepted when verifying (key rotation); never used
        to sign. Comma-separated in the configuration.
    :param callback_store: SQLAlchemy URL of the callback store (SQLite file by default; PostgreSQL when the
        receiver and the triggerers run on several hosts).
    :param require_signatures: Refuse callbacks without a valid ``X-Vobiz-Signature-V2/V3`` header (on by
        default; callback URLs carry credentials so that Vobiz signs them).
    :param max_body_bytes: Largest callback body the receiver accepts.
    :param nonce_window: Seconds a signature nonce is remembered to refuse replays (at least
        :data:`MIN_NONCE_WINDOW`: signatures never expire, so this must outlive every callback URL).
    :param max_callbacks_per_call: Callbacks stored per dialled destination of one try; more are refused.
    :param signature_conn_ids: Connection ids whose auth tokens may sign callbacks.
    :param poll_interval: Seconds between two look-ups of the shared trigger poller.
    :param callback_rate_limit: Callbacks per second the receiver accepts, in the long run, under one
        correlation token (one task try); ``0`` turns the limit off. Beyond it: 429 with ``Retry-After``.
    :param callback_rate_burst: Callbacks one correlation token may send at once before
        ``callback_rate_limit`` applies.
    """

    callback_base_url: str | None = None
    callback_secret: str | None = field(default=None, repr=False)
    callback_secret_fallbacks: tuple[str, ...] = field(default=(), repr=False)
    callback_store: str = field(default_factory=default_store_url, repr=False)
    require_signatures: bool = True
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    nonce_window: float = DEFAULT_NONCE_WINDOW
    max_callbacks_per_call: int = DEFAULT_MAX_CALLBACKS_PER_CALL
    signature_conn_ids: tuple[str, ...] = DEFAULT_SIGNATURE_CONN_IDS
    poll_interval: float = DEFAULT_POLL_INTERVAL
    callback_rate_limit: float = DEFAULT_CALLBACK_RATE_LIMIT
    callback_rate_burst: int = DEFAULT_CALLBACK_RATE_BURST

    def __post_init__(self) -> None:
        if self.max_body_bytes <= 0:
            raise ValueError(f"[vobiz] max_body_bytes must be positive, got {self.max_body_bytes}")
        if self.nonce_window < MIN_NONCE_WINDOW:
            raise ValueError(
                f"[vobiz] nonce_window must be at least {MIN_NONCE_WINDOW:.0f} seconds (two days), got "
                f"{self.nonce_window:g}: Vobiz's signatures never expire, so a nonce forgotten while a "
                "callback URL is still valid lets a captured signature be replayed"
            )
        if self.max_callbacks_per_call <= 0:
            raise ValueError(
                f"[vobiz] max_callbacks_per_call must be positive, got {self.max_callbacks_per_call}"
            )
        if self.poll_interval <= 0:
            raise ValueError(f"[vobiz] poll_interval must be positive, got {self.poll_interval}")
        if not self.callback_rate_limit >= 0:  # NaN too
            raise ValueError(
                "[vobiz] callback_rate_limit must not be negative (0 turns it off), "
                f"got {self.callback_rate_limit}"
            )
        if self.callback_rate_burst < 1:
            raise ValueError(
                f"[vobiz] callback_rate_burst must be at least 1, got {self.callback_rate_burst}"
            )

    @property
    def signing_secret(self) -> str:
        """The key that signs new correlation tokens.

        :raises MissingCallbackSecretError: When ``callback_secret`` is not set.
        :raises WeakCallbackSecretError: When it is shorter than :data:`MIN_SECRET_BYTES` bytes.
        """
        if not self.callback_secret:
            raise MissingCallbackSecretError()
        return _strong(self.callback_secret, "callback_secret")

    @property
    def verification_secrets(self) -> tuple[str, ...]:
        """The current secret first, then the fallbacks: every key a received token may be signed with.

        :raises MissingCallbackSecretError: When ``callback_secret`` is not set.
        :raises WeakCallbackSecretError: When it or a fallback is shorter than :data:`MIN_SECRET_BYTES`.
        """
        fallbacks = tuple(_strong(key, "callback_secret_fallbacks") for key in self.callback_secret_fallbacks)
        return (self.signing_secret, *fallbacks)

    @classmethod
    def from_config(cls, config: AirflowConfigParser | None = None) -> VobizSettings:
        """Read the ``[vobiz]`` section (``airflow.cfg`` or ``AIRFLOW__VOBIZ__*`` variables).

        :param config: The configuration parser to read; Airflow's ``conf`` when omitted.
        """
        if config is None:
            from airflow.configuration import conf

            config = conf

        def get(key: str) -> str | None:
            return _optional(config.get(SECTION, key, fallback=None))

        return cls(
            callback_base_url=get("callback_base_url"),
            callback_secret=get("callback_secret"),
            callback_secret_fallbacks=_split_list(get("callback_secret_fallbacks")),
            callback_store=get("callback_store") or default_store_url(),
            require_signatures=config.getboolean(SECTION, "require_signatures", fallback=True),
            max_body_bytes=config.getint(SECTION, "max_body_bytes", fallback=DEFAULT_MAX_BODY_BYTES),
            nonce_window=config.getfloat(SECTION, "nonce_window", fallback=DEFAULT_NONCE_WINDOW),
            max_callbacks_per_call=config.getint(
                SECTION, "max_callbacks_per_call", fallback=DEFAULT_MAX_CALLBACKS_PER_CALL
            ),
            signature_conn_ids=_split_list(get("signature_conn_ids")) or DEFAULT_SIGNATURE_CONN_IDS,
            poll_interval=config.getfloat(SECTION, "poll_interval", fallback=DEFAULT_POLL_INTERVAL),
            callback_rate_limit=config.getfloat(
                SECTION, "callback_rate_limit", fallback=DEFAULT_CALLBACK_RATE_LIMIT
            ),
            callback_rate_burst=config.getint(
                SECTION, "callback_rate_burst", fallback=DEFAULT_CALLBACK_RATE_BURST
            ),
        )


def get_settings() -> VobizSettings:
    """Read the ``[vobiz]`` settings now (no caching: a changed environment variable applies at once)."""
    return VobizSettings.from_config()


def resolve_callback_base_url(
    conn_extra_value: str | None, settings: VobizSettings | None = None
) -> str | None:
    """The callback base URL to use: the connection's ``callback_base_url`` extra, else ``[vobiz]``'s.

    The trailing slash is removed so that routes can be appended. ``None`` means callbacks are off (the
    waiting side then relies on the Vobiz API alone).

    :param conn_extra_value: The ``callback_base_url`` extra of the Vobiz connection, if any.
    :param settings: The settings to fall back on; read with :func:`get_settings` when omitted.
    """
    value = _optional(conn_extra_value)
    if value is None:
        value = (settings or get_settings()).callback_base_url
    if value is None:
        return None
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError(f"callback_base_url must be an absolute http(s) URL, got {value!r}")
    return value.rstrip("/")
