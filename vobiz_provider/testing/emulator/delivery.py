"""Outgoing HTTP of the emulator: callbacks (with retries) and XML fetches, signed like Vobiz signs them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from vobiz_provider.signatures import signature_headers
from vobiz_provider.testing.emulator.state import CallbackAttempt

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from vobiz_provider.testing.emulator.settings import EmulatorSettings

__all__ = ["USER_AGENT", "CallbackSender", "FetchResult"]

#: The ``User-Agent`` of Vobiz's webhooks (docs.vobiz.ai/concepts/callbacks).
USER_AGENT = "Vobiz-Webhook/1.0"

_XML_TYPES = ("application/xml", "text/xml")


@dataclass(kw_only=True)
class FetchResult:
    """Outcome of fetching an XML document (answer, fallback, action or redirect URL).

    :param reached: True when some attempt got a 2xx answer.
    :param body: The body of that answer.
    :param content_type: Its content type (without parameters, lower case).
    :param error: Why it failed: ``"unreachable"`` (no 2xx after every attempt), ``"content-type"`` or
        ``"too-large"``.
    """

    reached: bool
    body: str = ""
    content_type: str = ""
    error: str | None = None


def with_query(url: str, fields: Mapping[str, str]) -> str:
    """``url`` with ``fields`` appended to its query string (for GET callbacks)."""
    parts = urlsplit(url)
    extra = urlencode(list(fields.items()))
    query = f"{parts.query}&{extra}" if parts.query and extra else (parts.query or extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class CallbackSender:
    """Sends the emulator's requests to the application and logs every attempt.

    :param client: The ``httpx.AsyncClient`` to use (owned by the caller).
    :param settings: The emulator settings (read at every send, so changes apply at once).
    :param log: Called with every :class:`CallbackAttempt` once it finished.
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        settings: EmulatorSettings,
        log: Callable[[CallbackAttempt], None],
    ) -> None:
        self._client = client
        self._settings = settings
        self._log = log

    def _signs(self, url: str) -> bool:
        mode = self._settings.sign_callbacks
        # Vobiz: "Signature headers are emitted only when the callback URL has auth credentials configured".
        return mode == "always" or (mode == "credentials" and "@" in urlsplit(url).netloc)

    def _headers(self, url: str) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if self._signs(url):
            headers.update(
                signature_headers(
                    url,
                    self._settings.auth_token,
                    main_account_token=self._settings.main_account_token,
                    keep_userinfo=self._settings.signed_url_form == "kept",
                )
            )
        return headers

    async def _attempt(
        self,
        *,
        kind: str,
        url: str,
        method: str,
        fields: Mapping[str, str],
        call_uuid: str,
        number: int,
        keep_body: bool,
    ) -> CallbackAttempt:
        method = method.upper()
        target = with_query(url, fields) if method == "GET" else url
        headers = self._headers(target)
        attempt = CallbackAttempt(
            kind=kind,
            url=url,
            method=method,
            fields=dict(fields),
            headers=dict(headers),
            attempt=number,
            call_uuid=call_uuid,
        )
        timeout = httpx.Timeout(self._settings.callback_timeout, pool=None)
        try:
            if method == "GET":
                response = await self._client.get(target, headers=headers, timeout=timeout)
            else:
                response = await self._client.post(
                    target, data=dict(fields), headers=headers, timeout=timeout
                )
        except httpx.TimeoutException:
            attempt.error = "timeout"
        except httpx.HTTPError as exc:
            attempt.error = f"{type(exc).__name__}: {exc}"
        else:
            attempt.status = response.status_code
            attempt.content_type = response.headers.get("content-type")
            if keep_body:
                attempt.body = response.content[: self._settings.max_xml_bytes + 1].decode(
                    "utf-8", errors="replace"
                )
        self._log(attempt)
        return attempt

    def _backoff(self, retry: int) -> float:
        return self._settings.callback_backoff * (2.0 ** (retry - 1))

    async def notify(
        self, *, kind: str, url: str, method: str, fields: Mapping[str, str], call_uuid: str
    ) -> CallbackAttempt:
        """Send a callback; retry with exponential backoff until the answer is 200 or retries run out.

        :return: The last attempt.
        """
        number = 1
        while True:
            attempt = await self._attempt(
                kind=kind,
                url=url,
                method=method,
                fields=fields,
                call_uuid=call_uuid,
                number=number,
                keep_body=False,
            )
            if attempt.status == 200 or number > self._settings.callback_retries:
                return attempt
            await asyncio.sleep(self._backoff(number))
            number += 1

    async def fetch_xml(
        self,
        *,
        kind: str,
        url: str,
        method: str,
        fields: Mapping[str, str],
        call_uuid: str,
        retries: int | None = None,
    ) -> FetchResult:
        """Fetch a VobizXML document: retry on non-2xx or no answer, then check type and size."""
        retries = self._settings.answer_retries if retries is None else retries
        number = 1
        while True:
            attempt = await self._attempt(
                kind=kind,
                url=url,
                method=method,
                fields=fields,
                call_uuid=call_uuid,
                number=number,
                keep_body=True,
            )
            if attempt.status is not None and 200 <= attempt.status < 300:
                break
            if number > retries:
                return FetchResult(reached=False, error="unreachable")
            await asyncio.sleep(self._backoff(number))
            number += 1
        body = attempt.body or ""
        content_type = (attempt.content_type or "").split(";")[0].strip().lower()
        if len(body.encode("utf-8")) > self._settings.max_xml_bytes:
            return FetchResult(reached=True, body="", content_type=content_type, error="too-large")
        if content_type not in _XML_TYPES:
            return FetchResult(reached=True, body=body, content_type=content_type, error="content-type")
        return FetchResult(reached=True, body=body, content_type=content_type)
