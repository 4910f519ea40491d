"""The leak scanner finds a planted secret in each kind of place it scans, in each encoding, and never prints
the secret; it does not flag values merely derived from a secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import sqlite3
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from vobiz_provider.testing.secret_scan import (
    _CHUNK,
    Secret,
    SecretLogHandler,
    SecretScanner,
    encoded_forms,
)

if TYPE_CHECKING:
    from pathlib import Path

TOKEN = "planted-auth-token/+=&? 0123456789"
AUTH_ID = "MA_PLANTED1"
SECRET = Secret(name="planted auth token", value=TOKEN, auth_id=AUTH_ID)


def scanner() -> SecretScanner:
    return SecretScanner([SECRET])


def test_a_token_in_a_log_file_is_found_with_its_offset_and_never_printed(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "dag_id=d" / "run_id=r"
    logs.mkdir(parents=True)
    (logs / "attempt=1.log").write_text("clean line\n" * 3)
    prefix = "2026-12-03 [info] connecting with "
    (logs / "attempt=2.log").write_text(f"{prefix}{TOKEN}\n")

    findings = scanner().scan_tree(tmp_path)

    assert [(f.where, f.offset, f.form) for f in findings] == [
        (str(logs / "attempt=2.log"), len(prefix), "raw")
    ]
    assert TOKEN not in str(findings[0]) and TOKEN not in repr(findings)
    assert "planted auth token" in str(findings[0])


def test_a_token_across_a_chunk_boundary_is_found_once(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    offset = _CHUNK - 5  # starts in the first chunk, ends in the second
    path.write_bytes(b"x" * offset + TOKEN.encode() + b"y" * 100)

    findings = scanner().scan_file(path)

    assert [(f.offset, f.form) for f in findings] == [(offset, "raw")]


def test_a_token_in_a_sqlite_table_is_found_by_table_column_and_row(tmp_path: Path) -> None:
    db = tmp_path / "airflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE xcom (key TEXT, value BLOB)")
        conn.execute("INSERT INTO xcom VALUES ('a', ?)", (b'{"ok": 1}',))
        conn.execute("INSERT INTO xcom VALUES ('b', ?)", (json.dumps({"password": TOKEN}).encode(),))
    conn.close()

    findings = scanner().scan_database(f"sqlite:///{db}", label="airflow.db")

    assert any(f.where == "airflow.db:xcom.value[row 2]" for f in findings), findings
    # A tree scan reads the file's bytes and its tables.
    places = {f.where for f in scanner().scan_tree(tmp_path)}
    assert str(db) in places and f"{db}:xcom.value[row 2]" in places


@pytest.mark.postgres
def test_a_token_in_a_postgresql_table_is_found(pg_schema_url: str) -> None:
    engine = sa.create_engine(sa.engine.make_url(pg_schema_url).set(drivername="postgresql+psycopg2"))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE vobiz_events (id serial, form text)")
        conn.exec_driver_sql(
            "INSERT INTO vobiz_events (form) VALUES (%(form)s)", {"form": f"auth={quote(TOKEN, safe='')}"}
        )
    engine.dispose()

    findings = scanner().scan_database(pg_schema_url, label="pg")

    assert [(f.where, f.form) for f in findings] == [("pg:vobiz_events.form[row 1]", "url")]


def test_a_token_in_a_log_record_is_found_in_its_message_arguments_and_exception() -> None:
    handler = SecretLogHandler(scanner(), prefixes=("vobiz_provider",))
    logger = logging.getLogger("vobiz_provider.planted")
    other = logging.getLogger("someone.else")
    logger.addHandler(handler)
    other.addHandler(handler)
    try:
        logger.warning("connecting as %s", TOKEN)
        try:
            raise RuntimeError(f"refused: {TOKEN}")
        except RuntimeError:
            logger.exception("it failed")
        other.warning("not watched: %s", TOKEN)
    finally:
        logger.removeHandler(handler)
        other.removeHandler(handler)

    assert [(f.where, f.offset) for f in handler.findings] == [
        ("log record of vobiz_provider.planted", len("connecting as ")),
        ("log record of vobiz_provider.planted", handler.findings[1].offset),
    ]
    assert handler.scanner.counts.records == 2


@pytest.mark.parametrize("lead", ["", "a", "ab", "abc"])
def test_a_token_inside_base64_is_found_at_every_alignment(lead: str) -> None:
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        text = encode(f"{lead}{TOKEN}...".encode()).decode()
        assert TOKEN not in text
        findings = scanner().scan_text(f"payload: {text}", "text")
        # Where both alphabets give the same text, the finding is named "base64".
        assert {f.form for f in findings} & {"base64", "base64url"}, (lead, encode)


def test_the_basic_auth_form_is_named() -> None:
    header = "Authorization: Basic " + base64.b64encode(f"{AUTH_ID}:{TOKEN}".encode()).decode()
    assert "basic-auth" in {f.form for f in scanner().scan_text(header, "request")}


def test_url_and_json_encodings_are_found() -> None:
    forms = dict(encoded_forms(SECRET))
    assert {"raw", "url", "url+", "basic-auth", "base64", "base64url"} <= set(forms)
    assert {f.form for f in scanner().scan_text(f"?auth={quote(TOKEN, safe='')}", "url")} == {"url"}
    quoting = Secret(name="quoting secret", value='has "quotes" and \\ 0123')
    assert {f.form for f in SecretScanner([quoting]).scan_text(json.dumps({"k": quoting.value}), "j")} == {
        "json"
    }


def test_values_derived_from_a_secret_are_not_findings() -> None:
    """Per-URL credentials (an HMAC of the secret) and correlation tokens are not the secret."""
    callback_secret = Secret(name="callback secret", value="callback-secret-0123456789abcdef")
    derived = hmac.new(callback_secret.value.encode(), b"hangup|ti-key", hashlib.sha256).hexdigest()
    url = f"https://vobiz:{derived}@airflow.example.com/vobiz/callbacks/hangup?t=abc.def"
    assert SecretScanner([callback_secret]).scan_text(url, "url") == []


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="shorter than 12"):
        Secret(name="x", value="tok-abc")
