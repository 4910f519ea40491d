"""Pydantic models of every Vobiz payload, shared by the client, the emulator and the callback receiver.

One module per kind of payload; import from the module (``from vobiz_provider.models.call import
MakeCallRequest``), so that a DAG file needing the request model does not build the response and callback
models too:

* :mod:`~vobiz_provider.models.call` — the Make-Call request and the call statuses;
* :mod:`~vobiz_provider.models.responses` — what the REST API answers (fired call, live/queued call, CDR,
  account); :mod:`~vobiz_provider.models.errors` — its error bodies;
* :mod:`~vobiz_provider.models.callbacks` — the callbacks Vobiz posts during a call;
* :mod:`~vobiz_provider.models.answer` — what a call says (spoken message, keypad prompt);
* :mod:`~vobiz_provider.models.record` — :class:`~vobiz_provider.models.record.CallRecord`, our record of a
  call;
* :mod:`~vobiz_provider.models.connection` — a ``vobiz`` connection, validated;
* :mod:`~vobiz_provider.models.hangup_causes` — the hangup-cause table.
"""

from __future__ import annotations
