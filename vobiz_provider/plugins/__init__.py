"""Airflow plugins shipped with the Vobiz provider."""

from __future__ import annotations
