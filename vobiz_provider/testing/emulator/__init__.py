"""A strict local Vobiz: the REST API, the call lifecycle and its callbacks, for tests and demos.

Like moto for AWS: start one with :func:`~vobiz_provider.testing.run_emulator` (or the ``vobiz_emulator``
pytest fixture, or ``python -m vobiz_provider.testing.emulator``), point the client or an Airflow
connection at its ``base_url``, script what each destination does with
:class:`~vobiz_provider.testing.CallScript`, and read back every request, callback and call.

Import the public names from :mod:`vobiz_provider.testing`; this package only holds the modules.
"""
