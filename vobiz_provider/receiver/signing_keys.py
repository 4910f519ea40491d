"""The auth tokens that verify Vobiz's callback signatures, read from Airflow connections and cached.

Vobiz signs a callback with the auth token of the account that placed the call (``X-Vobiz-Signature-V2/V3``)
and, for sub-accounts, also with the main account's token (``X-Vobiz-Signature-MA-*``). The receiver finds
those tokens in the Vobiz connections named by ``[vobiz] signature_conn_ids`` and by the ``conn_id`` inside
the correlation token of the callback.

Connections are read with Airflow's ``BaseHook.get_connection`` (and validated as a
:class:`~vobiz_provider.models.connection.VobizConnectionConfig`), which picks the secrets backends that fit
the process:

* on the Airflow API server (the plugin), ``_AIRFLOW_PROCESS_CONTEXT=server`` is set by Airflow, so the
  search path is the custom secrets backend (if any), ``AIRFLOW_CONN_*`` variables, then the metadata DB;
* in the standalone ``vobiz-callbacks serve`` process, the custom secrets backend and ``AIRFLOW_CONN_*``
  variables only (no metadata DB access is attempted).

Each connection is cached for :data:`DEFAULT_TTL` seconds (found or not, so that unauthenticated traffic
cannot hammer the secrets backend). When a signature fails to verify, :meth:`SigningKeyCache.refresh` re-reads
the connections, at most once per TTL and connection, so that a rotated auth token applies within seconds.

The tokens are held as :class:`pydantic.SecretStr` and never logged.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret
from pydantic import SecretStr

from vobiz_provider.models.connection import VobizConnectionConfig

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

#: Seconds a connection's keys are reused before they are read again.
DEFAULT_TTL = 60.0


@dataclass(frozen=True, kw_only=True)
class SigningKeys:
    """What the receiver needs from one Vobiz connection.

    :param conn_id: The connection id.
    :param auth_token: The account's auth token (signs ``X-Vobiz-Signature-V2/V3``).
    :param main_account_token: The main account's token when the connection names one (its
        ``main_account_auth_token`` extra; signs ``X-Vobiz-Signature-MA-*`` on sub-account callbacks).
    :param timezone: The account's timezone, in which Vobiz writes ``StartTime``/``AnswerTime``/``EndTime``.
    :param callback_base_url: The connection's own ``callback_base_url`` (overrides ``[vobiz]``'s for calls
        placed through it), so the public URL Vobiz signed may start with it.
    """

    conn_id: str
    auth_token: SecretStr | None = field(default=None, repr=False)
    main_account_token: SecretStr | None = field(default=None, repr=False)
    timezone: str | None = None
    callback_base_url: str | None = None


def _secret(value: object) -> SecretStr | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value if value.get_secret_value() else None
    text = str(value)
    return SecretStr(text) if text else None


def load_signing_keys(conn_id: str) -> SigningKeys:
    """Read one Vobiz connection through Airflow's secrets backends.

    :param conn_id: The Vobiz connection id.
    :raises Exception: Whatever reading it raises (``AirflowNotFoundException``, a validation error...).
    """
    conn = BaseHook.get_connection(conn_id)
    if conn.password:
        mask_secret(conn.password)
    config = VobizConnectionConfig.from_connection(
        conn_id=conn_id, login=conn.login, password=conn.password, extra=conn.extra_dejson
    )
    if config.main_account_auth_token is not None:
        mask_secret(config.main_account_auth_token.get_secret_value())
    return SigningKeys(
        conn_id=conn_id,
        auth_token=_secret(config.auth_token),
        main_account_token=_secret(config.main_account_auth_token),
        timezone=config.timezone or None,
        callback_base_url=config.callback_base_url or None,
    )


@dataclass
class _Entry:
    keys: SigningKeys | None
    loaded_at: float
    forced_at: float | None = None


class SigningKeyCache:
    """A thread-safe, time-limited cache of :class:`SigningKeys` per connection id.

    :param ttl: Seconds an entry is reused; also the shortest interval between two forced re-reads.
    :param loader: Reads one connection; :func:`load_signing_keys` by default.
    :param clock: Monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        loader: Callable[[str], SigningKeys] = load_signing_keys,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0:
            raise ValueError(f"ttl must not be negative, got {ttl}")
        self._ttl = ttl
        self._loader = loader
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _load(self, conn_id: str) -> SigningKeys | None:
        try:
            return self._loader(conn_id)
        except Exception as err:
            # The type only: a hook error message could quote connection fields.
            log.warning(
                "Cannot read Vobiz connection %r to verify callback signatures (%s); "
                "callbacks signed with its token will be refused until it is readable",
                conn_id,
                type(err).__name__,
            )
            return None

    def get(self, conn_id: str) -> SigningKeys | None:
        """The keys of ``conn_id`` (``None`` when the connection cannot be read), from cache when fresh.

        :param conn_id: The Vobiz connection id.
        """
        now = self._clock()
        with self._lock:
            entry = self._entries.get(conn_id)
            if entry is not None and now - entry.loaded_at < self._ttl:
                return entry.keys
        keys = self._load(conn_id)
        with self._lock:
            previous = self._entries.get(conn_id)
            self._entries[conn_id] = _Entry(
                keys=keys, loaded_at=self._clock(), forced_at=previous.forced_at if previous else None
            )
        return keys

    def get_many(self, conn_ids: Iterable[str]) -> list[SigningKeys]:
        """The keys of every readable connection among ``conn_ids`` (duplicates removed, order kept).

        :param conn_ids: Vobiz connection ids.
        """
        found: list[SigningKeys] = []
        for conn_id in dict.fromkeys(conn_ids):
            keys = self.get(conn_id)
            if keys is not None:
                found.append(keys)
        return found

    def refresh(self, conn_ids: Iterable[str]) -> bool:
        """Re-read the connections whose last forced re-read is at least one TTL old.

        Called after a signature failed to verify, so that a rotated token is picked up at once without
        letting bad requests trigger a secrets-backend look-up each.

        :param conn_ids: Vobiz connection ids.
        :return: ``True`` if at least one connection was re-read (verification is worth retrying).
        """
        reloaded = False
        for conn_id in dict.fromkeys(conn_ids):
            now = self._clock()
            with self._lock:
                entry = self._entries.get(conn_id)
                if entry is not None and entry.forced_at is not None and now - entry.forced_at < self._ttl:
                    continue
                # Claim the refresh before loading so concurrent failures do not all reload.
                if entry is not None:
                    entry.forced_at = now
            keys = self._load(conn_id)
            with self._lock:
                self._entries[conn_id] = _Entry(keys=keys, loaded_at=self._clock(), forced_at=now)
            reloaded = True
        return reloaded

    def clear(self) -> None:
        """Forget every cached connection."""
        with self._lock:
            self._entries.clear()
