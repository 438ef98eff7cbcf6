"""The monitoring history: every server's figures, one row per save, in the
original monitoring server's tables (database ``status_server`` on MySQL:
``hardware``, ``login``, ``battle``, ``chat``), or the same tables in SQLite.

Each table is one kind of ``monitor.figures``: ``no`` (row number), ``date``
(UTC, to the second), ``serverno`` and one INT column per figure, named as the
figure (``server_on``, ``cpu``, ``sessions``, ...; NULL while the server was
off). The monitoring server creates the tables itself (and, on MySQL, the
database). Calls go through the same drivers and failure policy as the
account store (``store.driver``, ``store.calls``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from serverlink.monitor.figures import KINDS, Kind
from serverlink.store.calls import SqlCalls
from serverlink.store.driver import PoolLimits, SqlConnection

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_HISTORY_URL = "sqlite:///serverlink-monitor.db"
#: Rows one query returns at most.
MAX_ROWS = 100_000


def _columns(kind: Kind) -> list[str]:
    return [f.name for f in kind.figures]


def mysql_history_schema() -> tuple[str, ...]:
    return tuple(
        f"CREATE TABLE IF NOT EXISTS `{kind.table}` (\n"
        "  `no` BIGINT NOT NULL AUTO_INCREMENT,\n"
        "  `date` DATETIME NOT NULL,\n"
        "  `serverno` INT NOT NULL,\n"
        + "".join(f"  `{c}` INT NULL,\n" for c in _columns(kind))
        + "  PRIMARY KEY (`no`), INDEX `date_INDEX` (`date`))"
        for kind in KINDS
    )


def sqlite_history_schema() -> tuple[str, ...]:
    statements: list[str] = []
    for kind in KINDS:
        columns = "".join(f",\n  {c} INT NULL" for c in _columns(kind))
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {kind.table} (\n"
            "  no INTEGER PRIMARY KEY AUTOINCREMENT,\n"
            f"  date TEXT NOT NULL,\n  serverno INT NOT NULL{columns})"
        )
        statements.append(f"CREATE INDEX IF NOT EXISTS {kind.table}_date ON {kind.table} (date)")
    return tuple(statements)


def format_date(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime(DATE_FORMAT)


def parse_date(value: object) -> float:
    """A ``date`` as the engine returns it (MySQL: datetime; SQLite: text), in unix seconds."""
    moment = value if isinstance(value, datetime) else datetime.strptime(str(value), DATE_FORMAT)
    return moment.replace(tzinfo=UTC).timestamp()


def _int(value: object) -> int | None:
    return None if value is None else int(str(value))


@dataclass(frozen=True, slots=True)
class HistoryRow:
    kind: str
    server_no: int
    #: Unix seconds.
    time: float
    #: Figure name -> value (None: the server was off).
    values: Mapping[str, int | None]


#: One server's figures at a save: (kind, server number, figure name -> value).
Sample = tuple[Kind, int, Mapping[str, int | None]]


class HistoryStore(SqlCalls):
    """The history tables through one engine's driver."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        from serverlink.store import open_driver

        super().__init__(
            open_driver(url, timeout=timeout, pool=PoolLimits(min=0, max=2)), timeout=timeout
        )
        sql = self.driver.dialect
        self._insert = {
            kind.name: sql(
                f"INSERT INTO {kind.table} (date, serverno, {', '.join(_columns(kind))}) "
                f"VALUES (?, ?, {', '.join('?' for _ in kind.figures)})"
            )
            for kind in KINDS
        }
        self._prune = {kind.name: sql(f"DELETE FROM {kind.table} WHERE date < ?") for kind in KINDS}
        self._select = {
            kind.name: sql(
                f"SELECT date, serverno, {', '.join(_columns(kind))} FROM {kind.table} "
                f"WHERE date >= ? ORDER BY date, serverno LIMIT {MAX_ROWS}"
            )
            for kind in KINDS
        }

    def schema_missing(self, detail: str) -> str:
        return f"the history tables are missing in {self.display_url} ({detail})"

    async def connect(self) -> None:
        """Create the tables (and on MySQL the database) if missing."""
        schema = sqlite_history_schema() if self.engine == "sqlite" else mysql_history_schema()

        async def create() -> None:
            await self.driver.create_schema(schema)

        await self._call("create the history tables", create)

    async def save(self, samples: Sequence[Sample], when: float) -> int:
        """One row per server, all in one transaction; the rows written."""
        date = format_date(when)
        by_kind: dict[str, list[tuple[object, ...]]] = {}
        for kind, server_no, values in samples:
            row = (date, server_no, *(values.get(c) for c in _columns(kind)))
            by_kind.setdefault(kind.name, []).append(row)

        async def op(conn: SqlConnection, maybe_applied: bool) -> None:
            async with conn.transaction():
                for name, rows in by_kind.items():
                    await conn.executemany(self._insert[name], rows)

        if by_kind:
            await self._run("save the history", op)
        return sum(len(rows) for rows in by_kind.values())

    async def prune(self, before: float) -> int:
        """Delete the rows older than ``before`` (unix seconds); how many."""
        date = format_date(before)

        async def op(conn: SqlConnection, maybe_applied: bool) -> int:
            return sum([await conn.execute(sql, (date,)) for sql in self._prune.values()])

        return await self._run("prune the history", op)

    async def query(
        self, kind: Kind, since: float, server_no: int | None = None
    ) -> list[HistoryRow]:
        """Rows of ``kind`` from ``since`` (unix seconds) on, oldest first."""
        sql, columns = self._select[kind.name], _columns(kind)

        async def op(conn: SqlConnection, maybe_applied: bool) -> list[HistoryRow]:
            rows = await conn.fetch(sql, (format_date(since),))
            return [
                HistoryRow(
                    kind.name,
                    int(row[1]),
                    parse_date(row[0]),
                    {
                        c: None if v is None else int(v)
                        for c, v in zip(columns, row[2:], strict=True)
                    },
                )
                for row in rows
                if server_no is None or int(row[1]) == server_no
            ]

        return await self._run("read the history", op)

    async def close(self) -> None:
        await self.driver.close()


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d``, ``2w`` -> seconds (> 0); ValueError otherwise."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:], 0.0)
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration (90s, 15m, 1h, 7d)") from None
    if not 0 < seconds < 100 * 365 * 86400.0:  # also refuses nan and inf
        raise ValueError(f"{text!r} is not a duration of more than 0 s")
    return seconds
