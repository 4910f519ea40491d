"""Provider metadata, read by Airflow's ``ProvidersManager`` through the ``apache_airflow_provider`` entry
point.

Airflow imports this module while it loads its own configuration, so it must stay free of imports of
Airflow; of the provider it reads only the version and the defaults of :mod:`vobiz_provider.config`.

The connection form is declared here (``conn-fields`` and ``ui-field-behaviour``), which is what the
Airflow 3 UI renders without importing the hook. ``host``, ``port`` and ``schema`` are hidden: the API
address is the ``base_url`` extra, because Vobiz's base URL carries a path (``/api/v1``) that the
``host`` field cannot express; a ``host`` set anyway (for example through a connection URI) is ignored
by :class:`~vobiz_provider.hooks.vobiz.VobizHook` with a warning.
"""

from __future__ import annotations

from typing import Any

from vobiz_provider import __version__
from vobiz_provider.config import (
    DEFAULT_BASE_URL,
    DEFAULT_CALLBACK_RATE_BURST,
    DEFAULT_CALLBACK_RATE_LIMIT,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CALLBACKS_PER_CALL,
    DEFAULT_NONCE_WINDOW,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_SIGNATURE_CONN_IDS,
)

_INTEGRATION = "Vobiz"


def _modules(*modules: str) -> dict[str, Any]:
    return {"integration-name": _INTEGRATION, "python-modules": list(modules)}


def _conn_fields() -> dict[str, Any]:
    return {
        "base_url": {
            "label": "API base URL",
            "description": (
                "Root of the Vobiz REST API, including the version segment. Change it only to reach a "
                "local emulator or a proxy."
            ),
            "schema": {"type": ["string", "null"], "format": "url", "default": DEFAULT_BASE_URL},
        },
        "callback_base_url": {
            "label": "Callback base URL",
            "description": (
                "Public URL of the root of this provider's callback receiver, e.g. "
                "https://airflow.example.com/vobiz (plugin on the API server) or "
                "https://hooks.example.com/vobiz (standalone receiver). Vobiz must be able to reach it. "
                "Overrides [vobiz] callback_base_url for calls placed through this connection."
            ),
            "schema": {"type": ["string", "null"], "format": "url"},
        },
        "main_account_auth_token": {
            "label": "Main account Auth Token",
            "description": (
                "For a sub-account only: the main account's Auth Token, with which Vobiz signs the "
                "X-Vobiz-Signature-MA-V2/V3 headers of the sub-account's callbacks. When set, the receiver "
                "checks those headers too; leave empty otherwise."
            ),
            "schema": {"type": ["string", "null"], "format": "password"},
        },
        "timeout": {
            "label": "Request timeout (s)",
            "description": "Timeout of each HTTP request to Vobiz, in seconds.",
            "schema": {"type": ["number", "null"], "default": 10, "minimum": 0.1},
        },
        "max_retries": {
            "label": "Max retries",
            "description": (
                "How often a failed request is retried (429, 5xx, network errors). Placing a call is "
                "re-sent only when Vobiz provably did not accept it (connection refused, 429)."
            ),
            "schema": {"type": ["integer", "null"], "default": 3, "minimum": 0},
        },
        "cps": {
            "label": "Calls per second",
            "description": (
                "The account's calls-per-second limit. When set, calls placed from one Airflow process "
                "through this account are spaced to stay within it. Leave empty to disable pacing."
            ),
            "schema": {"type": ["number", "null"], "minimum": 0.01},
        },
        "timezone": {
            "label": "Console timezone",
            "description": (
                "Timezone set in the Vobiz Console, in which Vobiz writes the local times of callbacks "
                "(StartTime, AnswerTime, EndTime), e.g. Asia/Kolkata."
            ),
            "schema": {"type": ["string", "null"], "default": "UTC"},
        },
    }


def _config() -> dict[str, Any]:
    def option(
        description: str, *, type_: str, example: str | None, default: str | None, **kw: Any
    ) -> dict[str, Any]:
        return {
            "description": description,
            "version_added": "0.1.0",
            "type": type_,
            "example": example,
            "default": default,
            **kw,
        }

    return {
        "vobiz": {
            "description": (
                "Settings of the Vobiz callback receiver (the plugin mounted at /vobiz on the API server "
                "and the standalone ``vobiz-callbacks serve``), shared by the operators, triggers and "
                "sensors that read the callbacks it stores."
            ),
            "options": {
                "callback_base_url": option(
                    "Public URL of the receiver root that Vobiz posts callbacks to (ring, answer, hangup, "
                    "machine-detection, gather routes live below it). Used when the Vobiz connection has no "
                    "``callback_base_url`` extra. Without either, calls are placed without provider "
                    "callback URLs and their outcome is read by polling the Vobiz API.",
                    type_="string",
                    example="https://airflow.example.com/vobiz",
                    default=None,
                ),
                "callback_secret": option(
                    "Secret used to sign the correlation token put in each callback URL, which names the "
                    "task instance and try the callback belongs to. At least 32 bytes (generate one with "
                    '``python -c "import secrets; print(secrets.token_urlsafe(32))"``); shorter ones are '
                    "refused. Must be the same on every Airflow component and on the standalone receiver.",
                    type_="string",
                    example=None,
                    default=None,
                    sensitive=True,
                ),
                "callback_secret_fallbacks": option(
                    "Comma-separated earlier values of ``callback_secret`` that are still accepted when "
                    "verifying callback URLs issued before a key rotation; never used to sign. Each at "
                    "least 32 bytes.",
                    type_="string",
                    example=None,
                    default=None,
                    sensitive=True,
                ),
                "callback_store": option(
                    "SQLAlchemy URL of the database holding received callbacks. SQLite (the default, a file "
                    "in AIRFLOW_HOME) suits a single host; use PostgreSQL when the receiver and the "
                    "triggerers run on several hosts. Sensitive: it may hold a database password.",
                    type_="string",
                    example="postgresql://airflow@db/vobiz",
                    default=None,
                    sensitive=True,
                ),
                "require_signatures": option(
                    "Refuse callbacks that carry no valid X-Vobiz-Signature-V3/V2 header (403). On by "
                    "default: Vobiz signs callbacks only when the callback URL carries credentials, so the "
                    "provider issues every callback URL with user:password@ derived from the correlation "
                    "token and callback_secret (never the auth token). Set False only where callbacks "
                    "cannot arrive signed (a proxy that strips the credentials or the signature headers): "
                    "then whoever holds a callback URL can report that URL's own call.",
                    type_="boolean",
                    example="False",
                    default="True",
                ),
                "mask_phone_numbers": option(
                    "Show phone numbers masked in logs and in the exception texts that reach them: the "
                    "country code and the last 4 digits (+91******3210), each destination of a '<' list, the "
                    "user part of a SIP URI. XCom and the callback store keep numbers whole. Turn it off to "
                    "log numbers whole.",
                    type_="boolean",
                    example="False",
                    default="True",
                ),
                "max_body_bytes": option(
                    "Largest callback body, in bytes, the receiver accepts; larger requests get 413.",
                    type_="integer",
                    example="65536",
                    default=str(DEFAULT_MAX_BODY_BYTES),
                ),
                "nonce_window": option(
                    "Seconds for which signed callbacks' nonces are remembered; a callback replaying one "
                    "seen within this window is refused. Vobiz's signatures never expire, so this must "
                    "outlive every callback URL: at least 172800 (two days).",
                    type_="float",
                    example="1209600",
                    default=f"{DEFAULT_NONCE_WINDOW:g}",
                ),
                "max_callbacks_per_call": option(
                    "Callbacks stored per dialled destination of one task try; more are refused with 429. "
                    "A call produces about five (ring, answer, machine detection, gather, hangup).",
                    type_="integer",
                    example="100",
                    default=str(DEFAULT_MAX_CALLBACKS_PER_CALL),
                ),
                "signature_conn_ids": option(
                    "Comma-separated ids of the Vobiz connections whose auth tokens may have signed a "
                    "callback (the token of the connection named in the correlation token is always tried).",
                    type_="string",
                    example="vobiz_default,vobiz_marketing",
                    default=",".join(DEFAULT_SIGNATURE_CONN_IDS),
                ),
                "poll_interval": option(
                    "Seconds between two look-ups of the callback store by the shared per-process poller "
                    "of the deferrable operators and sensors.",
                    type_="float",
                    example="2",
                    default=f"{DEFAULT_POLL_INTERVAL:g}",
                ),
                "callback_rate_limit": option(
                    "Callbacks per second the receiver accepts, in the long run, under one correlation token "
                    "(one task try, whatever the number of its calls); more get 429 with Retry-After and "
                    "are not stored. 0 turns the limit off.",
                    type_="float",
                    example="20",
                    default=f"{DEFAULT_CALLBACK_RATE_LIMIT:g}",
                ),
                "callback_rate_burst": option(
                    "Callbacks one correlation token may send at once before callback_rate_limit applies. "
                    "One Make-Call request may have 1,000 destinations sharing a token, each with a ring, "
                    "an answer and a hangup callback within seconds: keep it above 5 per destination.",
                    type_="integer",
                    example="5000",
                    default=str(DEFAULT_CALLBACK_RATE_BURST),
                ),
            },
        }
    }


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata of ``airflow-provider-vobiz`` (validated by Airflow at load time)."""
    return {
        "package-name": "airflow-provider-vobiz",
        "name": "Vobiz",
        "description": (
            "`Vobiz <https://vobiz.ai/>`__ voice API: place outbound calls from DAGs and wait for their "
            "hangup through signed callbacks."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://docs.vobiz.ai/",
                "tags": ["service"],
            }
        ],
        "hooks": [_modules("vobiz_provider.hooks.vobiz")],
        "operators": [_modules("vobiz_provider.operators.call")],
        "sensors": [_modules("vobiz_provider.sensors.call")],
        "triggers": [_modules("vobiz_provider.triggers.hangup")],
        "notifications": ["vobiz_provider.notifications.vobiz.VobizNotifier"],
        "plugins": [{"name": "vobiz", "plugin-class": "vobiz_provider.plugins.vobiz.VobizPlugin"}],
        "extra-links": ["vobiz_provider.links.call.VobizCallLink"],
        "connection-types": [
            {
                "connection-type": "vobiz",
                "hook-class-name": "vobiz_provider.hooks.vobiz.VobizHook",
                "hook-name": "Vobiz",
                "conn-fields": _conn_fields(),
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "port", "schema"],
                    "relabeling": {"login": "Auth ID", "password": "Auth Token"},
                    "placeholders": {
                        "login": "MA_XXXXXXXX or SA_XXXXXXXX",
                        "password": "Auth Token from the Vobiz Console",
                        "extra": '{"base_url": "https://api.vobiz.ai/api/v1", "cps": 1}',
                    },
                },
            }
        ],
        "config": _config(),
    }
