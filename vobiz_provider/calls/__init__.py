"""What placing and waiting for a call mean, shared by the operator, the notifier, the sensor and the trigger.

* :mod:`~vobiz_provider.calls.placement` — the one way a call is placed (receiver URLs, correlation token,
  stored answer, ``POST /Call/``, the fired calls recorded in the ledger);
* :mod:`~vobiz_provider.calls.outcome` — when a call counts as a success, how an outcome is described, the
  XCom shape, and what a retry does about the previous try's call;
* :mod:`~vobiz_provider.calls.tracker` — when every leg of a call has hung up, and the call's timeline;
* :mod:`~vobiz_provider.calls.api` — asking the Vobiz API about a call, hanging up the legs still up;
* :mod:`~vobiz_provider.calls.waiting` — how long a wait for a hangup lasts, and when it asks the API;
* :mod:`~vobiz_provider.calls.pacing` — the account's CPS budget shared through the ledger by every process;
* :mod:`~vobiz_provider.calls.templating` — which argument values can only be checked once rendered.

The package init imports nothing, so that a DAG file's operator can use ``templating`` and ``outcome`` at
parse time without loading the ledger or the client.
"""

from __future__ import annotations
