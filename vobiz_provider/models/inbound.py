"""Inbound Vobiz applications: calls *to* your Vobiz number, answered by the receiver.

A Vobiz application's answer URL points at the receiver:
``{callback_base_url}/inbound/{application}?t=<token>`` (``vobiz-callbacks inbound-url APPLICATION`` prints
it, with the ``user:password@`` that makes Vobiz sign it). The receiver answers with the application's
VobizXML (a message and a keypad prompt, the :class:`~vobiz_provider.models.answer.AnswerSpec` the operator
uses), stores the call, the keys pressed and the hangup, and the
:class:`~vobiz_provider.triggers.inbound.VobizInboundCallTrigger` turns each into an asset event.

Applications are configured in ``[vobiz] inbound_applications``, a JSON object (environment variable
``AIRFLOW__VOBIZ__INBOUND_APPLICATIONS``)::

    {"incident-line": {"conn_id": "vobiz_default",
                       "message": "This is the incident line.",
                       "gather": {"prompt": "Press 1 to acknowledge the incident.", "num_digits": 1},
                       "rate_limit": 5, "rate_burst": 100}}

``rate_limit`` and ``rate_burst`` (optional) bound the requests one application's URLs take, as
``[vobiz] callback_rate_limit`` does per task try on the outbound routes: a bucket of ``rate_burst``
requests, refilled at ``rate_limit`` per second (``0`` turns it off); beyond it the receiver answers 429
with ``Retry-After`` and stores nothing. Each call makes two or three requests (the call, its key press,
its hangup).

The application token is ``base64url(HMAC-SHA256(callback_secret, "inbound-application\\n" + name))``: it
never expires (the URL is pasted once into the console) and changes when ``callback_secret`` is rotated
(the fallbacks keep the old URL working meanwhile).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vobiz_provider.correlation import TOKEN_PARAM, with_callback_credentials
from vobiz_provider.exceptions import VobizValidationError
from vobiz_provider.models.answer import AnswerSpec

__all__ = [
    "DEFAULT_INBOUND_RATE_BURST",
    "DEFAULT_INBOUND_RATE_LIMIT",
    "INBOUND_KINDS",
    "InboundApplication",
    "application_token",
    "inbound_url",
    "parse_applications",
    "token_matches",
]

#: The routes of one application, below ``/inbound/{application}``: the answer URL itself (``call``),
#: its Gather action (``digits``) and the hangup URL (``hangup``).
INBOUND_KINDS: Final = ("call", "digits", "hangup")

#: Requests per second one application's URLs take in the long run, and at once (an incident line's calls
#: come a few a minute; each makes two or three requests).
DEFAULT_INBOUND_RATE_LIMIT: Final = 5.0
DEFAULT_INBOUND_RATE_BURST: Final = 100

#: What an application name may be (it is a URL path segment and an asset-event field).
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_TOKEN_CONTEXT: Final = "inbound-application\n"


class InboundApplication(BaseModel):
    """One inbound application: what callers hear, and which connection verifies Vobiz's signatures.

    :param name: The application's name, the ``{application}`` of its URLs.
    :param conn_id: The Vobiz connection whose auth token verifies the callbacks' signatures.
    :param answer: What the caller hears (message, then an optional keypad prompt).
    :param rate_limit: Requests per second the application's URLs take in the long run; ``0``: no limit.
    :param rate_burst: Requests they take at once before ``rate_limit`` applies.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    conn_id: str = "vobiz_default"
    answer: AnswerSpec = Field(repr=False)
    rate_limit: float = Field(default=DEFAULT_INBOUND_RATE_LIMIT, ge=0, allow_inf_nan=False)
    rate_burst: int = Field(default=DEFAULT_INBOUND_RATE_BURST, ge=1)


def parse_applications(raw: str | None) -> dict[str, InboundApplication]:
    """The applications of ``[vobiz] inbound_applications`` (empty when unset).

    :param raw: The option's JSON text.
    :raises VobizValidationError: Naming the application and the field that is wrong.
    """
    if raw is None or not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise VobizValidationError(f"[vobiz] inbound_applications is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise VobizValidationError("[vobiz] inbound_applications must be a JSON object: {name: {...}}")
    applications = {}
    for name, entry in data.items():
        where = f"[vobiz] inbound_applications[{name!r}]"
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise VobizValidationError(f"{where}: the name must match {NAME_PATTERN.pattern}")
        if not isinstance(entry, dict):
            raise VobizValidationError(f"{where} must be an object")
        entry = dict(entry)
        conn_id = entry.pop("conn_id", "vobiz_default")
        if not isinstance(conn_id, str) or not conn_id:
            raise VobizValidationError(f"{where}: conn_id must be a non-empty string")
        limits = {key: entry.pop(key) for key in ("rate_limit", "rate_burst") if key in entry}
        try:
            answer = AnswerSpec.build(**entry)
        except VobizValidationError as err:
            raise VobizValidationError(f"{where}: {err}") from None
        except (TypeError, ValidationError) as err:
            raise VobizValidationError(f"{where}: {err}") from None
        try:
            applications[name] = InboundApplication(name=name, conn_id=conn_id, answer=answer, **limits)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'value'} {error['msg'].lower()}"
                for error in err.errors()
            )
            raise VobizValidationError(f"{where}: {problems}") from None
    return applications


def application_token(name: str, secret: str) -> str:
    """The token of application ``name``'s URLs under ``secret`` (``[vobiz] callback_secret``).

    :param name: The application's name.
    :param secret: The callback secret.
    """
    digest = hmac.new(secret.encode("utf-8"), (_TOKEN_CONTEXT + name).encode("utf-8"), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


def token_matches(name: str, token: str, secrets: tuple[str, ...]) -> bool:
    """Whether ``token`` is application ``name``'s token under one of ``secrets`` (constant time).

    :param name: The application's name.
    :param token: The token of the request.
    :param secrets: The verification secrets (current, then fallbacks).
    """
    expected = [application_token(name, secret) for secret in secrets]
    return any(hmac.compare_digest(token.encode("utf-8"), each.encode("ascii")) for each in expected)


def inbound_path(name: str, kind: str) -> str:
    """The route of ``kind`` of application ``name``, relative to the receiver root."""
    if kind not in INBOUND_KINDS:
        raise ValueError(f"unknown inbound route {kind!r}; expected one of {', '.join(INBOUND_KINDS)}")
    return f"/inbound/{name}" if kind == "call" else f"/inbound/{name}/{kind}"


def inbound_url(
    base_url: str, name: str, secret: str, *, kind: str = "call", credentials: bool = True
) -> str:
    """The URL Vobiz is given for route ``kind`` of application ``name`` (``call``: the answer URL).

    :param base_url: The receiver root (``callback_base_url``).
    :param name: The application's name.
    :param secret: The callback secret.
    :param kind: ``call`` (answer URL), ``digits`` (Gather action) or ``hangup`` (hangup URL).
    :param credentials: Put the ``user:password@`` in front of the host that makes Vobiz sign the URL.
    """
    token = application_token(name, secret)
    url = f"{base_url.rstrip('/')}{inbound_path(name, kind)}"
    if credentials:
        url = with_callback_credentials(url, token, secret)
    return f"{url}?{TOKEN_PARAM}={token}"


def describe(application: InboundApplication) -> dict[str, Any]:
    """The application as JSON primitives (for the CLI)."""
    return {"name": application.name, "conn_id": application.conn_id, "answer": application.answer.to_json()}
