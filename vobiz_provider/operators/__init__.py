"""Operators of the Vobiz provider."""

from __future__ import annotations
