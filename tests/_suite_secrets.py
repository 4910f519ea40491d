"""Every secret the test suite uses, in one place, for the leak scan (``tests/_leak_scan.py``).

The suite's secrets are fixed values: the callback secrets (correlation-token keys) of the session and of
the modules that set their own, the auth tokens of the connections the tests define (the emulator's, the
receiver's signing connections, the hooks'). The scan looks for exactly these values (and their encodings,
:mod:`vobiz_provider.testing.secret_scan`), never guesses by pattern: a credential derived from a secret
per callback URL, a correlation token or a request UUID is not a secret it looks for.

``tests/testing/test_suite_secrets.py`` checks that this list is complete: every string literal the tests
assign to a ``*SECRET``/``*TOKEN`` name, pass as ``callback_secret=``/``auth_token=``/``main_account_token=``
or set as ``AIRFLOW__VOBIZ__CALLBACK_SECRET`` is here (or in :data:`NOT_SECRETS`, or shorter than
:data:`~vobiz_provider.testing.secret_scan.MIN_SECRET_LENGTH`, too short to be looked for without false
matches).
"""

from __future__ import annotations

from vobiz_provider.testing.emulator.settings import EmulatorSettings
from vobiz_provider.testing.secret_scan import Secret

#: ``[vobiz] callback_secret`` of the whole test session (tests/conftest.py).
SESSION_CALLBACK_SECRET = "test-callback-secret-0123456789abcdef"
#: ``[vobiz] callback_secret`` of the ``airflow standalone`` end-to-end run (tests/e2e/conftest.py).
E2E_CALLBACK_SECRET = "e2e-callback-secret-0123456789abcdef"
#: The emulator's account (``vobiz_provider.testing``): every emulator the tests start uses its defaults
#: unless a test passes its own token; the e2e run's connection is this account.
EMULATOR_AUTH_ID = EmulatorSettings().auth_id
EMULATOR_AUTH_TOKEN = EmulatorSettings().auth_token

_CALLBACK_SECRETS = {
    "tests/conftest.py": SESSION_CALLBACK_SECRET,
    "tests/e2e/conftest.py": E2E_CALLBACK_SECRET,
    "tests/_ledger_helpers.py": "tests-callback-secret-0123456789abcdef",
    "tests/ui/conftest.py": "ui-test-callback-secret-0123456789abcdef",
    "tests/calls/test_placement.py": "placement-test-secret-0123456789abcdef",
    "tests/models/test_answer.py, tests/receiver/test_receiver_answers.py": (
        "answers-test-secret-0123456789abcdef"
    ),
    "tests/receiver/test_cli.py": "cli-test-callback-secret-0123456789abcdef",
    "tests/receiver/test_rate_limit.py": "rate-limit-test-callback-secret-0123456789",
    "tests/receiver/test_rate_limit.py (other)": "another-callback-secret-0123456789abcdef",
    "tests/receiver/test_app.py": "receiver-test-callback-secret-0123456789abcdef",
    "tests/receiver/test_transport.py": "transport-test-callback-secret-0123456789",
    "tests/receiver/test_refusals.py": "refusal-test-callback-secret-0123456789",
    "tests/test_config.py": "very-private-value",
    "tests/test_correlation.py": "credentials-test-callback-secret-0123456789",
    "tests/receiver/test_secure_default.py": "the-callback-secret-before-rotation-0123456789",
    "tests/faults/_airflow_processes.py": "faults-callback-secret-0123456789abcdef",
    "tests/faults/_receiver_process.py": "faults-receiver-callback-secret-0123456789abcdef",
}

#: The Airflow API JWT secret of the calls-page tests (tests/views, tests/ui/test_calls_page.py).
CALLS_PAGE_JWT_SECRET = "calls-page-jwt-secret-0123456789abcdef-0123456789abcdef-0123456789"

#: Other secrets of Airflow itself that tests set (where, value).
_OTHER_SECRETS = {
    "Airflow API JWT secret (tests/views, tests/ui/test_calls_page.py)": CALLS_PAGE_JWT_SECRET,
    "Airflow API JWT secret (tests/faults/_airflow_processes.py)": (
        "faults-jwt-secret-0123456789abcdef0123456789"
    ),
}

#: ``(where, auth_id or None, token)`` of the auth tokens (connection passwords, main-account tokens).
_AUTH_TOKENS: list[tuple[str, str | None, str]] = [
    ("the emulator", EMULATOR_AUTH_ID, EMULATOR_AUTH_TOKEN),
    ("tests/receiver/test_app.py", "MA_RECEIVER1", "receiver-test-auth-token"),
    ("tests/receiver/test_app.py (other)", "MA_RECEIVER1", "someone-elses-auth-token"),
    ("tests/receiver/test_app.py (rotated)", "MA_RECEIVER1", "rotated-auth-token"),
    ("tests/receiver/test_cli.py", "MA_CLITEST1", "cli-test-auth-token"),
    ("tests/receiver/test_transport.py", "MA_TRANSPORT1", "transport-test-auth-token"),
    ("tests/receiver/test_replay.py (main account)", None, "main-account-auth-token-0123"),
    ("tests/hooks/test_vobiz_hook.py", "MA_X", "hook-test-token-5f3a9c"),
    ("tests/test_signatures.py", None, "sub-account-token-123"),
    ("tests/test_signatures.py (main account)", None, "main-account-token-456"),
    ("tests/models/test_responses.py (auth_secret)", None, "s3cr3t-AUTH-secret-value"),
    ("tests/receiver/test_app.py (signing keys)", None, "visible-if-leaked"),
    ("tests/client/test_client_errors.py (not JSON)", "MA_PROXY", "not-json-token-77"),
    ("tests/client/test_client_errors.py (refused)", None, "connect-refused-token-42"),
    ("tests/client/test_client_errors.py (premise)", None, "premise-token-777"),
    ("tests/client/test_client_async.py", None, "tok-async-999"),
    ("tests/client/test_client_async.py (wrong)", None, "wrong-token-1234"),
    ("tests/testing/test_emulator_lifecycle.py (parent)", None, "parent-token"),
    ("tests/receiver/test_rate_limit.py", None, "rate-limit-test-auth-token"),
    (
        "tests/receiver/test_secure_default.py (migrated connection)",
        None,
        "auth-token-of-the-migrated-connection",
    ),
    ("tests/faults/_receiver_process.py", None, "faults-receiver-auth-token"),
    ("tests/faults/test_store_outage.py", None, "outage-test-auth-token"),
]

#: Every secret of the suite, named by where it is defined.
SUITE_SECRETS: tuple[Secret, ...] = (
    *(Secret(name=f"callback secret ({where})", value=value) for where, value in _CALLBACK_SECRETS.items()),
    *(
        Secret(name=f"auth token ({where})", value=value, auth_id=auth_id)
        for where, auth_id, value in _AUTH_TOKENS
    ),
    *(Secret(name=where, value=value) for where, value in _OTHER_SECRETS.items()),
)

#: Literals the completeness check would take for secrets but that the scan must not look for, with why.
NOT_SCANNED = {
    "missing correlation token (query parameter 't')": "a refusal message, not a secret",
    # The scanner's self-tests plant it in their own tmp_path files and tables: test inputs.
    "planted-auth-token/+=&? 0123456789": "planted by tests/testing/test_secret_scan.py in its own inputs",
}
NOT_SECRETS = frozenset(NOT_SCANNED)
