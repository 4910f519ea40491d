"""Operators of the Vobiz provider."""

from __future__ import annotations

from vobiz_provider.operators.call import VobizCallFailedError, VobizCallOperator

__all__ = ["VobizCallFailedError", "VobizCallOperator"]
