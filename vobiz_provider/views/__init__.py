"""The "Vobiz calls" page of the Airflow UI: the calls of the ledger for people, behind Airflow's login.

The package init imports nothing: :mod:`~vobiz_provider.views.paths` is read by the operator's extra link
at DAG-parse time, :mod:`~vobiz_provider.views.app` (FastAPI, the ledger) only by the plugin.
"""
