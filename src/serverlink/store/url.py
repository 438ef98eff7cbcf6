"""Database URLs: which engine, where, as whom.

    sqlite:///relative/path.db      file relative to the working directory
    sqlite:////absolute/path.db     absolute path (four slashes, as SQLAlchemy)
    sqlite:///:memory:              private in-memory database (tests)
    mysql://user[:pass]@host[:port]/dbname    (mariadb:// is the same)

A bad URL raises ``DatabaseUrlError`` (a ``ValueError``) whose one-line message says
what to write instead. Passwords never appear in messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULT_DB_URL = "sqlite:///serverlink-accounts.db"
"""The default: a SQLite file in the working directory."""

URL_FORMS = "sqlite:///path.db or mysql://user[:pass]@host[:port]/dbname"

_DB_NAME = re.compile(r"^[A-Za-z0-9_$]{1,64}$")
_MYSQL_SCHEMES = ("mysql", "mariadb")


class DatabaseUrlError(ValueError):
    """A database URL that cannot be used; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class SqliteTarget:
    path: str  # a file path, or ":memory:"

    @property
    def display(self) -> str:
        return f"sqlite:///{self.path}"


@dataclass(frozen=True, slots=True)
class MysqlTarget:
    user: str
    host: str
    port: int
    database: str
    password: str = field(default="", repr=False)

    @property
    def display(self) -> str:
        secret = ":***" if self.password else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mysql://{self.user}{secret}@{host}:{self.port}/{self.database}"


DatabaseTarget = SqliteTarget | MysqlTarget


def mask_url(url: str) -> str:
    """``url`` with the password (if any) replaced by ***, for messages."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


def parse_db_url(url: str) -> DatabaseTarget:
    """Parse a database URL; raises ``DatabaseUrlError`` with a one-line fix."""
    url = url.strip()
    if not url:
        raise DatabaseUrlError(f"empty database URL: use {URL_FORMS}")
    shown = mask_url(url)
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise DatabaseUrlError(f"database URL {shown!r} has no scheme: use {URL_FORMS}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _parse_sqlite(url, shown)
    if scheme in _MYSQL_SCHEMES:
        return _parse_mysql(url, shown)
    raise DatabaseUrlError(
        f"unsupported database URL scheme {scheme!r} in {shown!r}: use {URL_FORMS}"
    )


def _parse_sqlite(url: str, shown: str) -> SqliteTarget:
    rest = url[len("sqlite://") :]
    if not rest.startswith("/"):
        raise DatabaseUrlError(
            f"SQLite URL {shown!r} has a host part: write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    path = rest[1:]
    if not path:
        raise DatabaseUrlError(
            f"SQLite URL {shown!r} has no file name: write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    if "?" in path or "#" in path:
        raise DatabaseUrlError(
            f"SQLite URL {shown!r}: options after '?' or '#' are not supported, "
            "give only the file path"
        )
    if path.endswith("/"):
        raise DatabaseUrlError(f"SQLite URL {shown!r} names a directory, not a database file")
    return SqliteTarget(unquote(path))


def _parse_mysql(url: str, shown: str) -> MysqlTarget:
    form = "mysql://user[:pass]@host[:port]/dbname"
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise DatabaseUrlError(
            f"MySQL URL {shown!r}: options after '?' or '#' are not supported, use {form}"
        )
    if "@" not in parts.netloc or not parts.username:
        raise DatabaseUrlError(f"MySQL URL {shown!r} has no user name: use {form}")
    host = parts.hostname
    if not host:
        raise DatabaseUrlError(f"MySQL URL {shown!r} has no host: use {form}")
    try:
        port = parts.port
    except ValueError:
        port_text = parts.netloc.rpartition(":")[2]
        raise DatabaseUrlError(
            f"MySQL URL {shown!r}: port {port_text!r} is not a number from 1 to 65535"
        ) from None
    if port == 0:
        raise DatabaseUrlError(f"MySQL URL {shown!r}: port 0 is not valid, use 1 to 65535")
    database = parts.path.lstrip("/")
    if not database:
        raise DatabaseUrlError(f"MySQL URL {shown!r} has no database name: use {form}")
    if not _DB_NAME.match(database):
        raise DatabaseUrlError(
            f"MySQL URL {shown!r}: database name {database!r} must be 1 to 64 characters "
            "from A-Z a-z 0-9 _ $"
        )
    return MysqlTarget(
        user=unquote(parts.username),
        password=unquote(parts.password or ""),
        host=host,
        port=port or 3306,
        database=database,
    )
