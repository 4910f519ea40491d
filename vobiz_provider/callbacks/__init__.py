"""Callbacks from Vobiz: settings, correlation tokens, the durable store and the receiver app.

Nothing heavy is imported here, so that importing a submodule at DAG-parse time stays cheap.
"""

from __future__ import annotations
