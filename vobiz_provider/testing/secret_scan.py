"""Find known secrets where they do not belong: files, database tables, log records, any text.

A leak check that guesses what a secret looks like (long random strings, ``password=`` patterns) misses
secrets that look ordinary and flags values that only look random (request UUIDs, correlation tokens,
credentials derived per URL). This scanner is told the secrets instead and looks for each of them, raw and
in the encodings a program would write them in:

* ``raw`` — the UTF-8 bytes;
* ``url`` / ``url+`` — percent-encoded (``quote`` and ``quote_plus``, when they differ from the raw form);
* ``json`` — escaped as inside a JSON string (when it differs);
* ``base64`` / ``base64url`` — at each of the three byte alignments, so the secret is found inside a longer
  encoded text too (an ``Authorization: Basic`` header, a JSON document in base64);
* ``basic-auth`` — ``base64("<auth_id>:<secret>")``, the HTTP Basic credentials of an account, when the
  secret names its ``auth_id``.

A finding names the place, the offset, the secret's *name* and the form: never the value.

Usage (after an end-to-end run, say)::

    from vobiz_provider.testing.secret_scan import Secret, SecretScanner

    scanner = SecretScanner([Secret(name="auth token", value=token, auth_id="MA_XXXX")])
    findings = [*scanner.scan_tree(airflow_home), *scanner.scan_database("sqlite:///.../airflow.db")]
    assert not findings, "\\n".join(map(str, findings))

:class:`SecretLogHandler` is a :class:`logging.Handler` that scans every record it is given (message,
arguments rendered, exception and stack text) and keeps the findings.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["Finding", "ScanCounts", "Secret", "SecretLogHandler", "SecretScanner", "encoded_forms"]

#: Shortest secret the scanner accepts: a shorter value would be found by chance in ordinary text.
MIN_SECRET_LENGTH = 12
#: Shortest base64 fragment looked for (a very short secret has no stable fragment that long at every
#: alignment; such a secret is still found raw and in its other forms).
_MIN_BASE64_FRAGMENT = 8
#: Bytes read at a time from a file; consecutive chunks overlap by the longest needle.
_CHUNK = 1 << 20
#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True, kw_only=True)
class Secret:
    """A secret to look for.

    :param name: What it is, as findings name it (e.g. ``"callback secret (tests/conftest.py)"``).
    :param value: The secret itself; at least :data:`MIN_SECRET_LENGTH` characters.
    :param auth_id: The account ID that goes with an auth token: adds the HTTP Basic-auth form.
    """

    name: str
    value: str = field(repr=False)
    auth_id: str | None = None

    def __post_init__(self) -> None:
        if len(self.value) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"secret {self.name!r} is shorter than {MIN_SECRET_LENGTH} characters: it would be found by "
                "chance in ordinary text"
            )


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One place where a secret was found.

    :param where: The place: a file path, ``<database>:<table>.<column>[row N]``, ``log record <logger>``.
    :param offset: Byte offset of the match in that place (in the cell, for a table; in the rendered
        record, for a log record).
    :param secret: The secret's name (never its value).
    :param form: The encoding it was found in (``raw``, ``url``, ``base64``, ``basic-auth``...).
    """

    where: str
    offset: int
    secret: str
    form: str

    def __str__(self) -> str:
        return f"{self.where} @ offset {self.offset}: {self.secret} ({self.form})"


@dataclass
class ScanCounts:
    """How much was scanned: files (and their bytes), database tables and rows, log records, texts."""

    files: int = 0
    bytes: int = 0
    tables: int = 0
    rows: int = 0
    records: int = 0
    texts: int = 0

    def add(self, other: ScanCounts) -> None:
        """Add ``other``'s counts to these."""
        for name in ("files", "bytes", "tables", "rows", "records", "texts"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _base64_fragments(data: bytes, *, urlsafe: bool) -> list[bytes]:
    """The parts of the base64 encoding of ``data`` that do not depend on the bytes around it, for each of
    the three positions ``data`` may start at relative to a 3-byte group."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    fragments = []
    for lead in range(3):
        encoded = encode(b"\x00" * lead + data)
        start = (0, 2, 3)[lead]  # characters that also hold bits of the bytes before the secret
        end = ((lead + len(data)) // 3) * 4  # characters that also hold bits of the bytes after it
        fragment = encoded[start:end]
        if len(fragment) >= _MIN_BASE64_FRAGMENT:
            fragments.append(fragment)
    return fragments


def encoded_forms(secret: Secret) -> list[tuple[str, bytes]]:
    """``(form, needle)`` pairs: every byte string whose presence means ``secret`` is there.

    :param secret: The secret.
    """
    raw = secret.value.encode("utf-8")
    forms: list[tuple[str, bytes]] = [("raw", raw)]

    def add(form: str, needle: bytes) -> None:
        if needle and all(needle != known for _, known in forms):
            forms.append((form, needle))

    add("url", quote(secret.value, safe="").encode("ascii"))
    add("url+", quote_plus(secret.value, safe="").encode("ascii"))
    add("json", json.dumps(secret.value)[1:-1].encode("utf-8"))
    if secret.auth_id is not None:
        add("basic-auth", base64.b64encode(f"{secret.auth_id}:{secret.value}".encode()))
    for fragment in _base64_fragments(raw, urlsafe=False):
        add("base64", fragment)
    for fragment in _base64_fragments(raw, urlsafe=True):
        add("base64url", fragment)
    return forms


class SecretScanner:
    """Looks for the given secrets in files, directory trees, databases and texts.

    :param secrets: The secrets (their names should be unique: findings name them).
    :param skip_file: Called with each file path of :meth:`scan_tree`; ``True`` leaves the file out.
    """

    def __init__(self, secrets: Iterable[Secret], *, skip_file: Callable[[Path], bool] | None = None) -> None:
        self.secrets = tuple(secrets)
        if not self.secrets:
            raise ValueError("no secrets to look for")
        self._needles = [
            (secret.name, form, needle) for secret in self.secrets for form, needle in encoded_forms(secret)
        ]
        self._overlap = max(len(needle) for _, _, needle in self._needles)
        self._skip_file = skip_file
        self.counts = ScanCounts()

    # ------------------------------------------------------------------------------------------------ text

    def _find(self, data: bytes, where: str, *, base: int = 0) -> list[Finding]:
        findings = []
        for name, form, needle in self._needles:
            start = data.find(needle)
            while start != -1:
                findings.append(Finding(where=where, offset=base + start, secret=name, form=form))
                start = data.find(needle, start + 1)
        return findings

    def scan_text(self, text: str | bytes, where: str) -> list[Finding]:
        """Findings in one text.

        :param text: The text (str: encoded as UTF-8, as it would be written).
        :param where: What the findings call the place.
        """
        self.counts.texts += 1
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        return self._find(data, where)

    # ----------------------------------------------------------------------------------------------- files

    def scan_file(self, path: Path | str) -> list[Finding]:
        """Findings in one file, read in chunks (a file of any size).

        :param path: The file.
        """
        path = Path(path)
        findings: list[Finding] = []
        seen: set[tuple[int, str, str]] = set()
        self.counts.files += 1
        with open(path, "rb") as handle:
            position = 0
            tail = b""
            while True:
                chunk = handle.read(_CHUNK)
                if not chunk:
                    break
                self.counts.bytes += len(chunk)
                data = tail + chunk
                for finding in self._find(data, str(path), base=position - len(tail)):
                    key = (finding.offset, finding.secret, finding.form)
                    if key not in seen:  # a match inside the overlap is found twice
                        seen.add(key)
                        findings.append(finding)
                tail = data[-self._overlap :]
                position += len(chunk)
        return findings

    def scan_tree(self, root: Path | str) -> list[Finding]:
        """Findings in every regular file under ``root`` (symbolic links are not followed). SQLite databases
        among them are scanned as files (which includes rows deleted but not yet overwritten) and, table by
        table, with :meth:`scan_database`.

        :param root: A directory (or one file).
        """
        root = Path(root)
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        findings: list[Finding] = []
        for path in paths:
            if path.is_symlink() or (self._skip_file is not None and self._skip_file(path)):
                continue
            try:
                findings.extend(self.scan_file(path))
                with open(path, "rb") as handle:
                    is_sqlite = handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
            except OSError:
                continue  # removed while the tree was walked (a log rotated, a temp file)
            if is_sqlite:
                findings.extend(self.scan_database(f"sqlite:///{path}", label=str(path)))
        return findings

    # ------------------------------------------------------------------------------------------- databases

    def scan_database(
        self,
        url: str,
        *,
        schema: str | None = None,
        tables: Iterable[str] | None = None,
        label: str | None = None,
    ) -> list[Finding]:
        """Findings in every cell of a database's tables (SQLite, PostgreSQL: any SQLAlchemy URL).

        :param url: SQLAlchemy URL of the database.
        :param schema: The schema to read (PostgreSQL); the URL's default when omitted.
        :param tables: Only these tables (those that exist); every table when omitted.
        :param label: What findings call the database (default: the URL without its password).
        """
        import importlib.util

        import sqlalchemy as sa

        parsed = sa.engine.make_url(url)
        if parsed.drivername == "postgresql":  # SQLAlchemy 2.1 means psycopg 3 by it; take what is installed
            driver = next((d for d in ("psycopg2", "psycopg") if importlib.util.find_spec(d)), "psycopg2")
            parsed = parsed.set(drivername=f"postgresql+{driver}")
        engine = sa.create_engine(parsed)
        where = label or engine.url.render_as_string(hide_password=True)
        findings: list[Finding] = []
        try:
            with engine.connect() as conn:
                names = sa.inspect(conn).get_table_names(schema=schema)
                if tables is not None:
                    wanted = set(tables)
                    names = [name for name in names if name in wanted]
                quote = conn.dialect.identifier_preparer.quote
                for name in sorted(names):
                    qualified = f"{quote(schema)}.{quote(name)}" if schema else quote(name)
                    # Raw driver values: no type processing that could fail on what a table really holds.
                    result = conn.exec_driver_sql(f"SELECT * FROM {qualified}")
                    columns = list(result.keys())
                    self.counts.tables += 1
                    for number, row in enumerate(result, start=1):
                        self.counts.rows += 1
                        for column, value in zip(columns, row, strict=True):
                            data = _cell_bytes(value)
                            if data:
                                place = f"{where}:{name}.{column}[row {number}]"
                                findings.extend(self._find(data, place))
        finally:
            engine.dispose()
        return findings


def _cell_bytes(value: Any) -> bytes:
    """A table cell as the bytes to search: text as UTF-8, binary as is, JSON values serialised."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str).encode("utf-8")
    return str(value).encode("utf-8")


class SecretLogHandler(logging.Handler):
    """A logging handler that scans every record it handles and keeps the findings (thread-safe).

    Each record is scanned as rendered: the message with its arguments, the exception and stack text.

    :param scanner: The scanner to use.
    :param prefixes: Handle only records of loggers whose names start with one of these (all when empty).
    """

    def __init__(self, scanner: SecretScanner, *, prefixes: Iterable[str] = ()) -> None:
        super().__init__(level=logging.NOTSET)
        self.scanner = scanner
        self.prefixes = tuple(prefixes)
        self.findings: list[Finding] = []
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if self.prefixes and not record.name.startswith(self.prefixes):
            return
        try:
            parts = [record.getMessage()]
        except Exception:  # a record whose arguments do not fit its format: scan both as given
            parts = [str(record.msg), repr(record.args)]
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(record.stack_info)
        text = "\n".join(parts)
        with self._guard:
            self.scanner.counts.records += 1
            self.findings.extend(
                self.scanner._find(text.encode("utf-8", "surrogatepass"), f"log record of {record.name}")
            )
