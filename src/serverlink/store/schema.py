"""The seed's ``accountdb`` schema, for MariaDB/MySQL and for SQLite.

MariaDB gets the original DDL unchanged except for ``IF NOT EXISTS`` and
``CREATE OR REPLACE VIEW`` (so that ``init`` is idempotent); the tables are created
in the database named in the URL, not necessarily ``accountdb``.

SQLite gets the same table, column, index and view names. Its integer primary keys
are ``INTEGER PRIMARY KEY`` (64-bit, the table's rowid: the same range as BIGINT and
the fastest lookup SQLite has); the two auto-numbered keys use ``AUTOINCREMENT`` so
that, as with MySQL's AUTO_INCREMENT, numbers are never reused.
"""

from __future__ import annotations

TABLES = ("account", "sessionkey", "status", "whiteip")
VIEW = "v_account"

_V_ACCOUNT_COLUMNS = "SELECT a.accountno, a.userid, a.usernick, b.sessionkey, c.status"
_V_ACCOUNT_FROM = (
    "\n  FROM account a LEFT JOIN sessionkey b ON a.accountno = b.accountno\n"
    "                 LEFT JOIN status c ON a.accountno = c.accountno"
)
V_ACCOUNT_SELECT = _V_ACCOUNT_COLUMNS + _V_ACCOUNT_FROM
"""The definition of ``v_account`` (the seed's view)."""


def account_read(unix_now: str) -> str:
    """``v_account``'s definition plus the seconds the key has left (NULL: a key
    that does not expire), by the database's clock ``unix_now``: what the
    store's account reads run (``sql.Statements.read_accounts``), so the login
    server learns a key's expiry in the same statement as the key."""
    return f"{_V_ACCOUNT_COLUMNS}, b.expires - {unix_now}{_V_ACCOUNT_FROM}"


def mysql_create_database(database: str) -> str:
    """``CREATE DATABASE IF NOT EXISTS``; ``database`` must already be validated
    (identifiers cannot be bound as parameters; ``url.parse_db_url`` allows only
    ``[A-Za-z0-9_$]``)."""
    return f"CREATE DATABASE IF NOT EXISTS `{database}`"


# Run with the target database selected (``USE``), so that the view's unqualified
# table names resolve to this database.
MYSQL_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS `account` (
  `accountno` BIGINT NOT NULL AUTO_INCREMENT,
  `userid`    CHAR(64) NOT NULL,
  `userpass`  CHAR(64) NOT NULL,
  `usernick`  CHAR(64) NOT NULL,
  PRIMARY KEY (`accountno`), INDEX `userid_INDEX` (`userid` ASC))""",
    """CREATE TABLE IF NOT EXISTS `sessionkey` (
  `accountno` BIGINT NOT NULL, `sessionkey` CHAR(64) NULL, PRIMARY KEY (`accountno`))""",
    """CREATE TABLE IF NOT EXISTS `status` (
  `accountno` BIGINT NOT NULL, `status` INT NOT NULL DEFAULT 0, PRIMARY KEY (`accountno`))""",
    """CREATE TABLE IF NOT EXISTS `whiteip` (
  `no` BIGINT NOT NULL AUTO_INCREMENT, `ip` CHAR(32) NOT NULL, PRIMARY KEY (`no`))""",
    f"CREATE OR REPLACE VIEW `v_account` AS\n  {V_ACCOUNT_SELECT}",
    # serverlink's additions, also upgrading a database made before them: a key's
    # expiry (seconds since the epoch; NULL: never), and one account per userid.
    "ALTER TABLE `sessionkey` ADD COLUMN IF NOT EXISTS `expires` DOUBLE NULL",
    "CREATE UNIQUE INDEX IF NOT EXISTS `userid_UNIQUE` ON `account` (`userid`)",
)

SQLITE_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS account (
  accountno INTEGER PRIMARY KEY AUTOINCREMENT,
  userid    CHAR(64) NOT NULL,
  userpass  CHAR(64) NOT NULL,
  usernick  CHAR(64) NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS userid_INDEX ON account (userid ASC)",
    """CREATE TABLE IF NOT EXISTS sessionkey (
  accountno INTEGER PRIMARY KEY NOT NULL, sessionkey CHAR(64) NULL)""",
    """CREATE TABLE IF NOT EXISTS status (
  accountno INTEGER PRIMARY KEY NOT NULL, status INT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS whiteip (
  no INTEGER PRIMARY KEY AUTOINCREMENT, ip CHAR(32) NOT NULL)""",
    "DROP VIEW IF EXISTS v_account",
    f"CREATE VIEW v_account AS\n  {V_ACCOUNT_SELECT}",
    # As MariaDB's default collation does, userids differing only in case are one.
    "CREATE UNIQUE INDEX IF NOT EXISTS userid_UNIQUE ON account (userid COLLATE NOCASE)",
)
#: SQLite has no ADD COLUMN IF NOT EXISTS: run when ``sessionkey`` lacks the column
#: (a database made before it).
SQLITE_ADD_EXPIRES = "ALTER TABLE sessionkey ADD COLUMN expires REAL NULL"
KEY_EXPIRY_PROBE = "SELECT expires FROM sessionkey LIMIT 0"
"""Fails on a database made before key expiry: ``connect`` then upgrades it."""

# Used by connect() to check that ``init`` has been run.
SCHEMA_PROBE = "SELECT accountno, userid, usernick, sessionkey, status FROM v_account LIMIT 0"
