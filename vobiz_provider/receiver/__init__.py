"""The callback receiver: Vobiz's callbacks in, durably stored in the call ledger.

:mod:`~vobiz_provider.receiver.app` is the web app (mounted at ``/vobiz`` by the Airflow plugin, or served by
``vobiz-callbacks serve``, :mod:`~vobiz_provider.receiver.cli`); :mod:`~vobiz_provider.receiver.pipeline`
decides what happens to each callback. Nothing is imported here, so that the CLI's ``--help`` stays cheap.
"""

from __future__ import annotations
