"""Notifiers that phone people through Vobiz (``on_failure_callback``, Deadline Alerts, ...)."""

from __future__ import annotations
