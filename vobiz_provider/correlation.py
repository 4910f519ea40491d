"""The signed correlation token that ties a Vobiz callback URL to the try of the task that placed the call.

The placer puts a token in the query string of every callback URL it gives Vobiz
(``{base}/callbacks/hangup?t=<token>``). Vobiz's own signatures cover only the URL *without* its query
string, so the token carries its own HMAC: a callback can only name a task instance that this Airflow
deployment really issued a URL for. Each token also says

* which routes it may be used on (``kinds``): the hangup URL's token does not open ``/callbacks/answer``,
  and the answer URL's token covers ``answer`` and the ``gather`` action it leads to;
* until when (``exp``, seconds since the epoch): derived from the call's own ring timeout and time limit
  plus Vobiz's callback retries (:func:`token_lifetime`), so a URL leaked from a log stops working.

The token names a try, not a call: the ledger binds each callback to the calls that try placed (see
:mod:`vobiz_provider.ledger.binding`), so a URL cannot reach another task's calls.

Format: ``base64url(compact JSON) + "." + base64url(HMAC-SHA256(secret, first part))``, without padding.
The payload is signed, not encrypted: dag, run and task ids are readable by whoever sees the URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from vobiz_provider.exceptions import InvalidCorrelationTokenError

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

#: The callback routes of the receiver, one per Vobiz URL of ``POST /Call/``.
CALLBACK_KINDS: Final[tuple[str, ...]] = (
    "ring",
    "answer",
    "hangup",
    "machine-detection",
    "gather",
    "dial",
    "record",
)

#: Name of the query parameter that carries the token.
TOKEN_PARAM: Final = "t"

#: Tokens longer than this are refused when issued: URLs that long risk being cut by Vobiz or proxies.
MAX_TOKEN_LENGTH: Final = 2000

#: The kinds the token of each URL may be used on: the answer URL leads to the ``gather`` action and to the
#: ``<Dial>`` and ``<Record>`` callbacks of the XML the receiver serves.
KINDS_OF_URL: Final[dict[str, tuple[str, ...]]] = {
    "answer": ("answer", "gather", "dial", "record"),
    "ring": ("ring",),
    "hangup": ("hangup",),
    "machine-detection": ("machine-detection",),
}

#: Format version written in every token; tokens of other versions (or none) are refused.
TOKEN_VERSION: Final = 2

#: Seconds Vobiz may keep retrying a callback after the call ended (three retries with exponential
#: backoff, intervals undocumented), and a call may wait in Vobiz's queue before it rings (undocumented):
#: one hour each.
CALLBACK_RETRY_SPAN: Final = 3600
QUEUE_ALLOWANCE: Final = 3600

#: Vobiz cuts every call at 24 hours whatever its ``time_limit``.
MAX_CALL_SECONDS: Final = 86400

_FIELDS: Final = ("dag_id", "run_id", "task_id", "map_index", "try_number", "conn_id")


class _TaskInstanceLike(Protocol):
    dag_id: str
    run_id: str
    task_id: str
    try_number: int

    @property
    def map_index(self) -> int | None: ...  # None (Airflow's RuntimeTaskInstance) counts as -1


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    decoded = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    # b64decode also takes "+" and "/" next to the altchars, padding, and unused trailing bits: accept only
    # the one spelling _b64encode writes, so that a token has exactly one form.
    if _b64encode(decoded) != text:
        raise ValueError("not canonical unpadded base64url")
    return decoded


def _sign(secret: str, payload: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), payload.encode("ascii"), hashlib.sha256).digest()


@dataclass(frozen=True, kw_only=True)
class CorrelationToken:
    """The task instance (and try) on whose behalf a call was placed.

    :param dag_id: DAG id.
    :param run_id: DAG run id.
    :param task_id: Task id.
    :param map_index: Map index (``-1`` when the task is not mapped).
    :param try_number: The try that placed the call.
    :param conn_id: The Vobiz connection used; its auth token verifies Vobiz's signature on callbacks.
    """

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    try_number: int = 1
    conn_id: str = "vobiz_default"

    def __post_init__(self) -> None:
        for name in ("dag_id", "run_id", "task_id", "conn_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"CorrelationToken.{name} must be a non-empty string, got {value!r}")
        for name in ("map_index", "try_number"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"CorrelationToken.{name} must be an integer, got {value!r}")
        if self.map_index < -1:
            raise ValueError(f"CorrelationToken.map_index must be -1 or more, got {self.map_index}")
        if self.try_number < 0:
            raise ValueError(f"CorrelationToken.try_number must not be negative, got {self.try_number}")

    @classmethod
    def from_task_instance(cls, ti: _TaskInstanceLike, *, conn_id: str) -> CorrelationToken:
        """Build the token of the running task instance (``context["ti"]``).

        :param ti: The task instance placing the call.
        :param conn_id: The Vobiz connection id.
        """
        map_index = ti.map_index if ti.map_index is not None else -1
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=map_index,
            try_number=ti.try_number,
            conn_id=conn_id,
        )

    @property
    def ti_key(self) -> str:
        """``dag_id/run_id/task_id/map_index``: the same for every try of one task instance."""
        return f"{self.dag_id}/{self.run_id}/{self.task_id}/{self.map_index}"

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON primitives."""
        return asdict(self)

    def encode(self, secret: str, *, kinds: Collection[str], expires_at: float) -> str:
        """Serialise and sign the token for the routes ``kinds``, valid until ``expires_at``.

        :param secret: ``[vobiz] callback_secret``.
        :param kinds: The receiver routes the URL may be used on (:data:`KINDS_OF_URL`).
        :param expires_at: Seconds since the epoch after which the receiver refuses the token
            (:func:`token_lifetime` from now).
        """
        if not secret:
            raise ValueError("the secret that signs a correlation token must not be empty")
        allowed = sorted(set(kinds))
        if not allowed or set(allowed) - set(CALLBACK_KINDS):
            raise ValueError(
                f"a correlation token needs kinds among {', '.join(CALLBACK_KINDS)}, got {list(kinds)!r}"
            )
        claims = {**self.to_dict(), "v": TOKEN_VERSION, "kinds": allowed, "exp": int(expires_at)}
        payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        token = f"{payload}.{_b64encode(_sign(secret, payload))}"
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError(
                f"the correlation token would be {len(token)} characters long (limit {MAX_TOKEN_LENGTH}): "
                "the dag, run or task id is too long to fit in a callback URL"
            )
        return token

    @classmethod
    def decode(
        cls, token: str, secrets: str | Sequence[str], *, kind: str, now: float | None = None
    ) -> CorrelationToken:
        """Verify a token for the route ``kind`` and parse it.

        :param token: The ``t`` query parameter of a callback.
        :param secrets: The secret, or every secret currently accepted (key rotation), newest first.
        :param kind: The route the token arrived on; it must be one the token was issued for.
        :param now: The current time in seconds since the epoch (default: the clock).
        :raises InvalidCorrelationTokenError: When the token is malformed, its signature matches no secret,
            it has expired, or it was not issued for ``kind``.
        """
        keys = [secrets] if isinstance(secrets, str) else list(secrets)
        keys = [key for key in keys if key]
        if not keys:
            raise ValueError("no secret to verify the correlation token with")
        if not isinstance(token, str) or not token:
            raise InvalidCorrelationTokenError("malformed correlation token: empty")
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidCorrelationTokenError("malformed correlation token: too long")
        payload, sep, signature_text = token.partition(".")
        if not sep or not payload or not signature_text or "." in signature_text:
            raise InvalidCorrelationTokenError(
                "malformed correlation token: expected '<payload>.<signature>'"
            )
        try:
            payload.encode("ascii")
            signature = _b64decode(signature_text)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise InvalidCorrelationTokenError(
                "malformed correlation token: signature is not base64url"
            ) from None
        # Compare against every key (no early exit) so timing does not reveal which key matched.
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(_sign(key, payload), signature)
        if not matched:
            raise InvalidCorrelationTokenError("correlation token has a bad signature")
        try:
            data = json.loads(_b64decode(payload))
        except (binascii.Error, ValueError):
            raise InvalidCorrelationTokenError(
                "malformed correlation token: payload is not base64url JSON"
            ) from None
        if not isinstance(data, dict) or set(_FIELDS) - data.keys():
            raise InvalidCorrelationTokenError("malformed correlation token: fields missing")
        if data.get("v") != TOKEN_VERSION:
            raise InvalidCorrelationTokenError(
                "correlation token of an older format (no route or expiry): issued before an upgrade"
            )
        expires_at, kinds = data.get("exp"), data.get("kinds")
        if not isinstance(expires_at, int) or isinstance(expires_at, bool) or not isinstance(kinds, list):
            raise InvalidCorrelationTokenError("malformed correlation token: exp or kinds missing")
        if (time.time() if now is None else now) >= expires_at:
            raise InvalidCorrelationTokenError("correlation token has expired")
        if kind not in kinds:
            raise InvalidCorrelationTokenError(f"correlation token was not issued for the {kind} route")
        try:
            return cls(**{name: data[name] for name in _FIELDS})
        except ValueError as err:
            raise InvalidCorrelationTokenError(f"malformed correlation token: {err}") from None


def token_lifetime(*, ring_timeout: float | None, time_limit: float | None) -> float:
    """Seconds a call's callback URLs stay valid: how long Vobiz may still call them.

    The call may wait in Vobiz's queue (:data:`QUEUE_ALLOWANCE`), ring for ``ring_timeout``, last up to
    ``time_limit`` (Vobiz's defaults 120 s and 14,400 s; never more than :data:`MAX_CALL_SECONDS`), and its
    last callback may be retried for :data:`CALLBACK_RETRY_SPAN` after it ended.

    :param ring_timeout: The call's ``ring_timeout`` (``None``: Vobiz's default).
    :param time_limit: The call's ``time_limit`` (``None``: Vobiz's default).
    """
    ring = 120.0 if ring_timeout is None else float(ring_timeout)
    limit = 14400.0 if time_limit is None else float(time_limit)
    return QUEUE_ALLOWANCE + ring + min(limit, MAX_CALL_SECONDS) + CALLBACK_RETRY_SPAN


#: The user name of the credentials put in every callback URL (:func:`callback_credentials`).
CREDENTIALS_USER: Final = "vobiz"


def callback_credentials(token: str, secret: str) -> tuple[str, str]:
    """The ``user:password`` put in front of the host of a callback URL, so that Vobiz signs its callbacks.

    Vobiz sends signature headers only for callback URLs that carry credentials. These are derived, not
    stored: the password is ``base64url(HMAC-SHA256(secret, "callback-url-credentials\\n" + token))`` cut
    to 24 bytes, so the receiver can rebuild the URL it issued (to check a signature made over the URL with
    its credentials) from the correlation token and ``[vobiz] callback_secret`` alone. They are no secret
    beyond the URL they travel in and never contain the auth token.

    :param token: The encoded correlation token of the URL.
    :param secret: The callback secret (the one that signs new tokens, or a fallback when checking).
    """
    digest = hmac.new(
        secret.encode("utf-8"), f"callback-url-credentials\n{token}".encode(), hashlib.sha256
    ).digest()
    return CREDENTIALS_USER, _b64encode(digest[:24])


def with_callback_credentials(url: str, token: str, secret: str) -> str:
    """``url`` with :func:`callback_credentials` in front of its host, unless it carries credentials already
    (a ``callback_base_url`` with its own ``user:password@``, e.g. for a proxy's basic auth, keeps them).

    :param url: An absolute http(s) URL.
    :param token: The encoded correlation token of the URL.
    :param secret: The callback secret to derive the password with.
    """
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return url
    user, password = callback_credentials(token, secret)
    return urlunsplit((parts.scheme, f"{user}:{password}@{parts.netloc}", parts.path, parts.query, ""))


def callback_url(base_url: str, kind: str, token: str, *, secret: str | None = None) -> str:
    """The URL Vobiz calls for one kind of callback: ``{base}/callbacks/{kind}?t={token}``.

    :param base_url: Public URL of the receiver root (see ``resolve_callback_base_url``).
    :param kind: One of :data:`CALLBACK_KINDS`.
    :param token: The encoded :class:`CorrelationToken`.
    :param secret: The callback secret: when given, the URL carries :func:`callback_credentials`
        (``https://vobiz:<password>@host/...``), which is what makes Vobiz sign its callbacks.
    """
    if kind not in CALLBACK_KINDS:
        raise ValueError(f"unknown callback kind {kind!r}; expected one of {', '.join(CALLBACK_KINDS)}")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"callback base URL must be an absolute http(s) URL, got {base_url!r}")
    path = f"{parts.path.rstrip('/')}/callbacks/{kind}"
    query = urlencode({TOKEN_PARAM: token})
    if parts.query:
        query = f"{parts.query}&{query}"
    url = urlunsplit((parts.scheme, parts.netloc, path, query, ""))
    return url if secret is None else with_callback_credentials(url, token, secret)
