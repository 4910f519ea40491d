"""Vobiz callback signatures (docs.vobiz.ai/concepts/validating-callbacks): computing and verifying them.

Vobiz signs the *URL it calls* and a random nonce, never the body:

* V2 = ``base64(HMAC-SHA256(key=auth_token, msg=base_url + nonce))``, headers ``X-Vobiz-Signature-V2`` and
  ``X-Vobiz-Signature-V2-Nonce``;
* V3 = ``base64(HMAC-SHA256(key=auth_token, msg=base_url + "." + nonce))``, headers ``X-Vobiz-Signature-V3``
  and ``X-Vobiz-Signature-V3-Nonce``;
* ``X-Vobiz-Signature-MA-V2`` / ``-MA-V3``: the same schemes keyed by the main (parent) account's token on
  sub-account callbacks, paired with the V2 / V3 nonce headers.

``base_url`` is ``scheme://host[:port]/path``: the query string and fragment are dropped. Vobiz's own
samples disagree on whether ``user:password@`` stays in it, so verification accepts both forms. The
legacy HMAC-SHA1 ``X-Vobiz-Signature`` (V1) is not checked.

A signature carries no time and covers neither the body nor the query string, so it proves only that
Vobiz once called this URL with this nonce. Replays are refused by remembering what was signed
(:attr:`SignatureCheck.replay_key`: the URL and the nonce). Nonces must be digits, as Vobiz sends them
(:data:`NONCE_PATTERN`): otherwise a V3 signature for nonce ``N`` would also be a V2 signature for nonce
``"." + N``, a second use of one captured signature.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "HEADER_MA_V2",
    "HEADER_MA_V3",
    "HEADER_V2",
    "HEADER_V2_NONCE",
    "HEADER_V3",
    "HEADER_V3_NONCE",
    "NONCE_PATTERN",
    "SignatureCheck",
    "base_url_of",
    "new_nonce",
    "sign",
    "signature_headers",
    "verify_signature",
]

HEADER_V2 = "X-Vobiz-Signature-V2"
HEADER_V2_NONCE = "X-Vobiz-Signature-V2-Nonce"
HEADER_V3 = "X-Vobiz-Signature-V3"
HEADER_V3_NONCE = "X-Vobiz-Signature-V3-Nonce"
HEADER_MA_V2 = "X-Vobiz-Signature-MA-V2"
HEADER_MA_V3 = "X-Vobiz-Signature-MA-V3"

Version = Literal["v2", "v3"]

#: What a nonce must look like: Vobiz sends 20 random digits; 10 to 64 digits are accepted.
NONCE_PATTERN: Final = re.compile(r"[0-9]{10,64}")


def base_url_of(url: str, *, keep_userinfo: bool = False) -> str:
    """The part of ``url`` Vobiz signs: ``scheme://host[:port]/path`` (no query, no fragment).

    :param url: The callback URL as Vobiz calls it.
    :param keep_userinfo: Keep ``user:password@`` in front of the host (Vobiz's Python sample does).
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if not keep_userinfo and "@" in netloc:
        netloc = netloc.rsplit("@", 1)[1]
    return f"{parts.scheme}://{netloc}{parts.path}"


def _message(base_url: str, nonce: str, version: Version) -> bytes:
    if version == "v2":
        return f"{base_url}{nonce}".encode()
    if version == "v3":
        return f"{base_url}.{nonce}".encode()
    raise ValueError(f"unknown signature version {version!r}; expected 'v2' or 'v3'")


def _digest(base_url: str, nonce: str, token: str, version: Version) -> bytes:
    return hmac.new(token.encode(), _message(base_url, nonce, version), hashlib.sha256).digest()


def sign(url: str, nonce: str, token: str, *, version: Version, keep_userinfo: bool = False) -> str:
    """The base64 signature of ``url`` and ``nonce`` under ``token``.

    :param url: The callback URL (its query string is ignored).
    :param nonce: The nonce sent alongside.
    :param token: The auth token (or the main account's token for the MA headers).
    :param version: ``"v2"`` (``base_url + nonce``) or ``"v3"`` (``base_url + "." + nonce``).
    :param keep_userinfo: Sign the URL with its ``user:password@`` part.
    """
    base = base_url_of(url, keep_userinfo=keep_userinfo)
    return base64.b64encode(_digest(base, nonce, token, version)).decode("ascii")


def new_nonce() -> str:
    """A fresh random 20-digit nonce, as Vobiz sends."""
    return f"{secrets.randbelow(10**20):020d}"


def signature_headers(
    url: str,
    token: str,
    *,
    main_account_token: str | None = None,
    nonce: str | None = None,
    keep_userinfo: bool = False,
) -> dict[str, str]:
    """The signature headers Vobiz would send with a callback to ``url`` (V2 and V3, one shared nonce).

    :param url: The callback URL.
    :param token: The (sub-)account auth token.
    :param main_account_token: The parent account's token; adds the ``MA-V2``/``MA-V3`` headers.
    :param nonce: The nonce to use (a fresh one by default).
    :param keep_userinfo: Sign the URL with its ``user:password@`` part.
    """
    nonce = nonce if nonce is not None else new_nonce()
    headers = {
        HEADER_V2: sign(url, nonce, token, version="v2", keep_userinfo=keep_userinfo),
        HEADER_V2_NONCE: nonce,
        HEADER_V3: sign(url, nonce, token, version="v3", keep_userinfo=keep_userinfo),
        HEADER_V3_NONCE: nonce,
    }
    if main_account_token is not None:
        headers[HEADER_MA_V2] = sign(
            url, nonce, main_account_token, version="v2", keep_userinfo=keep_userinfo
        )
        headers[HEADER_MA_V3] = sign(
            url, nonce, main_account_token, version="v3", keep_userinfo=keep_userinfo
        )
    return headers


@dataclasses.dataclass(frozen=True, kw_only=True)
class SignatureCheck:
    """The result of :func:`verify_signature`.

    :param status: ``valid`` (at least one signature checked and none failed), ``invalid`` (a signature
        that could be checked did not match, or came without its nonce, or with a nonce that is not
        digits) or ``unsigned`` (no signature that could be checked).
    :param nonce: The nonce of the signature that decided the status.
    :param scheme: ``V2``, ``V3``, ``MA-V2`` or ``MA-V3``: the scheme that decided the status.
    :param url: The signed URL (without query string and user info) of a valid signature.
    :param nonces: The nonces of every valid signature (Vobiz sends the same one in each header).
    """

    status: Literal["valid", "invalid", "unsigned"]
    nonce: str | None = None
    scheme: str | None = None
    url: str | None = None
    nonces: tuple[str, ...] = ()

    @property
    def is_valid(self) -> bool:
        """Whether the callback carried a matching signature and no failing one."""
        return self.status == "valid"

    @property
    def replay_keys(self) -> tuple[str, ...]:
        """What the valid signatures signed, hashed: the URL with each nonce (empty unless valid).

        A callback whose signatures share one nonce (Vobiz's) has one key, whichever of its headers is
        replayed; a key seen before means a replay.
        """
        if self.status != "valid" or self.url is None:
            return ()
        return tuple(hashlib.sha256(f"{self.url}\n{nonce}".encode()).hexdigest() for nonce in self.nonces)


@dataclasses.dataclass(frozen=True)
class _Scheme:
    name: str
    header: str
    nonce_headers: tuple[str, ...]
    version: Version
    main_account: bool


# Checked in this order; the first valid one names the result.
_SCHEMES = (
    _Scheme("V3", HEADER_V3, (HEADER_V3_NONCE,), "v3", main_account=False),
    _Scheme("V2", HEADER_V2, (HEADER_V2_NONCE,), "v2", main_account=False),
    _Scheme("MA-V3", HEADER_MA_V3, (HEADER_MA_V3 + "-Nonce", HEADER_V3_NONCE), "v3", main_account=True),
    _Scheme("MA-V2", HEADER_MA_V2, (HEADER_MA_V2 + "-Nonce", HEADER_V2_NONCE), "v2", main_account=True),
)


def _decode_signatures(value: str) -> list[bytes]:
    """The signatures of a header value: one, or a comma-separated list (during token rotation)."""
    decoded = []
    for item in value.split(","):
        text = item.strip()
        if not text:
            continue
        try:
            decoded.append(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
        except (binascii.Error, ValueError):
            continue  # not base64: cannot match anything
    return decoded


def _matches(
    received: Iterable[bytes], bases: Sequence[str], nonce: str, keys: Sequence[str], version: Version
) -> bool:
    expected = [_digest(base, nonce, key, version) for base in bases for key in keys]
    found = False
    for signature in received:
        for digest in expected:
            # compare every candidate (no early exit) so timing does not reveal which key matched
            found |= hmac.compare_digest(signature, digest)
    return found


def verify_signature(
    headers: Mapping[str, str],
    url: str,
    tokens: Sequence[str],
    *,
    main_account_tokens: Sequence[str] = (),
) -> SignatureCheck:
    """Check the Vobiz signature headers of a callback against the URL it was sent to.

    Every signature header present that can be checked (its key is configured) must match; one that
    does not, or arrives without its nonce, makes the result ``invalid`` even if another one matches.
    MA headers are checked only when ``main_account_tokens`` are given.

    :param headers: The request headers (any mapping; names compared case-insensitively).
    :param url: The callback URL as Vobiz called it (the public URL; the query string is ignored).
    :param tokens: Auth tokens to accept (several during a token rotation).
    :param main_account_tokens: Main-account tokens to check the ``MA-`` headers with.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    bases = list(dict.fromkeys([base_url_of(url), base_url_of(url, keep_userinfo=True)]))
    token_list = [token for token in tokens if token]
    main_list = [token for token in main_account_tokens if token]
    first_valid: SignatureCheck | None = None
    nonces: dict[str, None] = {}
    for scheme in _SCHEMES:
        value = lowered.get(scheme.header.lower())
        if value is None:
            continue
        keys = main_list if scheme.main_account else token_list
        if not keys:
            continue  # nothing to check this header with
        nonce = next(
            (lowered[name.lower()] for name in scheme.nonce_headers if lowered.get(name.lower())), None
        )
        if (
            nonce is None
            or NONCE_PATTERN.fullmatch(nonce) is None
            or not _matches(_decode_signatures(value), bases, nonce, keys, scheme.version)
        ):
            return SignatureCheck(status="invalid", nonce=None, scheme=scheme.name)
        if first_valid is None:
            first_valid = SignatureCheck(status="valid", nonce=nonce, scheme=scheme.name, url=bases[0])
        nonces.setdefault(nonce)
    if first_valid is None:
        return SignatureCheck(status="unsigned")
    return dataclasses.replace(first_valid, nonces=tuple(nonces))
