"""Operator extra links (the package init imports nothing)."""
