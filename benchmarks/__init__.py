"""Benchmarks of the Vobiz provider: trigger fan-in, receiver ingest, firing, DAG-parse cost.

Run them all with ``python -m benchmarks.run`` (see ``benchmarks/README.md``).
"""

from __future__ import annotations
