"""Drive an emulator running in another process through its control API (``/_emulator/...``).

For demos and end-to-end tests where the emulator runs as ``python -m vobiz_provider.testing.emulator``
next to real Airflow processes::

    remote = RemoteEmulator("http://127.0.0.1:8765")
    remote.script("919876543210", CallScript.busy())
    ...  # trigger the DAG
    hangup = remote.wait_for_callbacks("hangup")[0]
    assert hangup["fields"]["CallStatus"] == "busy"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from vobiz_provider.testing.emulator.script import CallScript

__all__ = ["RemoteEmulator"]


class RemoteEmulator:
    """A thin client of the control API. Records come back as plain JSON dicts.

    :param url: Root URL of the emulator (``http://host:port``, without ``/api/v1``).
    :param timeout: HTTP timeout in seconds (waits add their own timeout on top).
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=f"{self.url}/_emulator", timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __enter__(self) -> RemoteEmulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._client.request(method, path, **kwargs)
        if response.status_code == 408:
            raise TimeoutError(response.json().get("error", "timed out"))
        if response.status_code >= 400:
            raise ValueError(f"emulator control API {method} {path}: {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    def health(self) -> bool:
        """Whether the emulator answers."""
        try:
            return bool(self._call("GET", "/health").get("ok"))
        except httpx.HTTPError:
            return False

    def settings(self) -> dict[str, Any]:
        """The current settings (tokens redacted)."""
        return self._call("GET", "/settings")

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings; returns the new settings."""
        return self._call("PATCH", "/settings", json=changes)

    def script(self, destination: str, script: CallScript) -> None:
        """Make calls to ``destination`` follow ``script``."""
        self._call("POST", "/scripts", json={"destination": destination, "script": script.to_dict()})

    def set_default_script(self, script: CallScript) -> None:
        """Script for every destination without its own."""
        self._call("POST", "/scripts", json={"default": script.to_dict()})

    def clear_scripts(self) -> None:
        """Forget the per-destination scripts."""
        self._call("DELETE", "/scripts")

    def inject_fault(self, **fault: Any) -> dict[str, Any]:
        """See :meth:`VobizEmulator.inject_fault`."""
        return self._call("POST", "/faults", json=fault)

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self._call("DELETE", "/faults")

    def hold_calls(self) -> None:
        """Keep calls ``queued`` (not ringing) until :meth:`release_calls` (``Switchboard.hold_calls``)."""
        self._call("POST", "/hold")

    def release_calls(self, *, per_second: float | None = None) -> None:
        """Let held calls ring (``per_second``: that many per second, in the order they were placed)."""
        self._call("DELETE", "/hold", params={"per_second": per_second} if per_second else None)

    def reset(self) -> None:
        """Forget calls, records, scripts and faults."""
        self._call("POST", "/reset")

    def requests(self) -> list[dict[str, Any]]:
        """Every API request received."""
        requests: list[dict[str, Any]] = self._call("GET", "/requests")["requests"]
        return requests

    def callbacks(self, kind: str | None = None, *, call_uuid: str | None = None) -> list[dict[str, Any]]:
        """Callback attempts, optionally of one kind and/or call."""
        params = {k: v for k, v in {"kind": kind, "call_uuid": call_uuid}.items() if v}
        callbacks: list[dict[str, Any]] = self._call("GET", "/callbacks", params=params)["callbacks"]
        return callbacks

    def calls(self) -> list[dict[str, Any]]:
        """Every call with its state."""
        calls: list[dict[str, Any]] = self._call("GET", "/calls")["calls"]
        return calls

    def wait_for_callbacks(
        self, kind: str | None = None, count: int = 1, timeout: float = 10.0, *, call_uuid: str | None = None
    ) -> list[dict[str, Any]]:
        """Block until ``count`` callback attempts of ``kind`` were made; ``TimeoutError`` otherwise."""
        params: dict[str, Any] = {"count": count, "timeout": timeout}
        params.update({k: v for k, v in {"kind": kind, "call_uuid": call_uuid}.items() if v})
        wait = timeout + (self._client.timeout.read or 0)
        callbacks: list[dict[str, Any]] = self._call("GET", "/wait/callbacks", params=params, timeout=wait)[
            "callbacks"
        ]
        return callbacks

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """Block until no call runs and no callback is in flight; ``TimeoutError`` otherwise."""
        wait = timeout + (self._client.timeout.read or 0)
        self._call("GET", "/wait/idle", params={"timeout": timeout}, timeout=wait)
