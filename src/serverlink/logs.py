"""Log lines: one per event, with time (UTC, ISO 8601 with ``Z``), level and
server name::

    2026-11-25T13:00:00.123Z WARNING game: 127.0.0.1:5123: protocol error (bad_checksum): ...

or, with ``--log-format json``, one JSON object per line for log shippers
(``time``, ``level``, ``server``, ``logger``, ``message``).

The live screen's quiet-mode summary lines have their own logger
(``serverlink.summary``), shown at ``--log-level warning`` too: a service that
logs only warnings still says how it is doing every few seconds.

Loggers are named ``serverlink.<part>``. The name shown is the server the
process runs ("game", or "game/2" for worker 2) for the generic parts of the
stack (``serverlink.net``, ``serverlink.runner``, ...), and the part's own short
name otherwise (``serverlink.login`` -> "login", ``serverlink.dummy`` -> "dummy").

Console lines go through a rich ``Console`` so that, while the live server
screen is shown, they are printed above it instead of tearing it. Worker
processes do not write anywhere themselves: ``WorkerLogHandler`` ships their
records to the parent, which emits them through its own handlers (console and
``--log-file``), so every line of a multi-process server comes out whole and in
one place.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text

ROOT = "serverlink"

LEVELS = ("debug", "info", "warning", "error", "critical")

#: Parts of the stack that are not a server of their own: their lines carry
#: the name of the server the process runs.
GENERIC_PARTS = frozenset(
    {
        "",
        "net",
        "runner",
        "supervise",
        "monitor",
        "protocol",
        "store",
        "cli",
        "config",
        "summary",
        "aio",
    }
)

_LEVEL_STYLES = {
    logging.WARNING: "yellow",
    logging.ERROR: "bold red",
    logging.CRITICAL: "bold white on red",
    logging.DEBUG: "dim",
}

_process_server: str | None = None
_handlers: list[logging.Handler] = []


def set_process_server(name: str | None) -> None:
    """Name the server this process runs ("game", "game/2"); shown on the lines
    of the generic parts (net, runner, ...)."""
    global _process_server
    _process_server = name


def display_name(record: logging.LogRecord) -> str:
    """The server name shown on a line."""
    shown = record.__dict__.get("server")
    if isinstance(shown, str):
        return shown  # set by the worker that logged it
    name = record.name
    part = name[len(ROOT) + 1 :] if name.startswith(ROOT + ".") else ("" if name == ROOT else name)
    head = part.split(".", 1)[0]
    if _process_server is not None and (
        head in GENERIC_PARTS or head == _process_server.split("/", 1)[0]
    ):
        return _process_server
    return head or ROOT


FORMATS = ("text", "json")
SUMMARY = "serverlink.summary"


def utc_stamp(created: float) -> str:
    """``2026-11-25T13:00:00.123Z``: unambiguous whatever the machine's zone."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{stamp}.{int(created * 1000) % 1000:03d}Z"


class LineFormatter(logging.Formatter):
    """``YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL   name: message`` (+ traceback lines, which
    only debug logging asks for)."""

    def __init__(self) -> None:
        super().__init__()

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_stamp(record.created)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        line = (
            f"{self.formatTime(record)} {record.levelname:<7} "
            f"{display_name(record)}: {record.message}"
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, server, logger, message (and the
    traceback, when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": utc_stamp(record.created),
            "level": record.levelname.lower(),
            "server": display_name(record),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (one of {', '.join(FORMATS)})")
    return JsonFormatter() if fmt == "json" else LineFormatter()


class ConsoleHandler(logging.Handler):
    """Writes lines through a rich Console: above the live screen while one is
    shown, plain to stderr otherwise (colours only on a terminal)."""

    def __init__(self, console: Console, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(formatter or LineFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            style = (
                ""
                if isinstance(self.formatter, JsonFormatter)
                else _LEVEL_STYLES.get(record.levelno, "")
            )
            self.console.print(
                Text(line, style=style), soft_wrap=True, markup=False, highlight=False
            )
        except Exception:
            self.handleError(record)


class WorkerLogHandler(logging.Handler):
    """In a worker process: hands each record, made picklable (message
    formatted, traceback turned to text), to ``send`` for the parent to emit."""

    def __init__(self, send: Callable[[logging.LogRecord], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            server = display_name(record)
            msg = record.getMessage()
            if record.exc_info:
                msg = f"{msg}\n{logging.Formatter().formatException(record.exc_info)}"
            clone = logging.makeLogRecord(record.__dict__)
            clone.msg = msg
            clone.args = None
            clone.exc_info = None
            clone.exc_text = None
            clone.__dict__["server"] = server
            self._send(clone)
        except Exception:
            self.handleError(record)


def level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    return number


def _reset() -> logging.Logger:
    logger = logging.getLogger(ROOT)
    for handler in _handlers:
        logger.removeHandler(handler)
        handler.close()
    _handlers.clear()
    logger.propagate = False
    return logger


def setup_logging(
    level: str | int = "info",
    log_file: str | None = None,
    console: Console | None = None,
    fmt: str = "text",
) -> Console:
    """Configure the ``serverlink`` loggers: lines to stderr through ``console``
    (one is made when None) and, with ``log_file``, appended to that file too;
    ``fmt`` "text" or "json".

    Idempotent: calling it again replaces the handlers. Returns the console,
    which the live screen must use so that log lines do not tear it.
    Raises OSError when the log file cannot be opened.
    """
    if console is None:
        console = make_console()
    file_handler: logging.Handler | None = None
    if log_file:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(make_formatter(fmt))
    logger = _reset()
    number = level_number(level)
    logger.setLevel(number)
    # Summaries are shown down to warning level (not at error/critical).
    logging.getLogger(SUMMARY).setLevel(
        min(number, logging.INFO) if number <= logging.WARNING else number
    )
    handlers: list[logging.Handler] = [ConsoleHandler(console, make_formatter(fmt))]
    if file_handler is not None:
        handlers.append(file_handler)
    for handler in handlers:
        logger.addHandler(handler)
        _handlers.append(handler)
    return console


def reopen_log_files() -> None:
    """Reopen the ``--log-file`` (SIGHUP, after logrotate moved it away)."""
    for handler in _handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
            finally:
                handler.release()


def setup_worker_logging(level: str | int, send: Callable[[logging.LogRecord], None]) -> None:
    """In a worker process: every record goes to the parent through ``send``."""
    logger = _reset()
    logger.setLevel(level_number(level))
    handler = WorkerLogHandler(send)
    logger.addHandler(handler)
    _handlers.append(handler)


def emit_forwarded(record: logging.LogRecord) -> None:
    """In the parent: emit a record that a worker shipped."""
    logging.getLogger(record.name).handle(record)


class ServerConsole(Console):
    """A rich Console that outlives its reader: when stderr's pipe breaks (a
    ``serverlink up`` or a ``| head`` that went away) it goes quiet and the
    program goes on (lines still reach --log-file). Rich's own answer is
    SystemExit from inside whatever was logging, which skips the graceful stop
    and left a server hanging at exit on its database thread."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


def make_console(**kwargs: Any) -> Console:
    """The console of logs and screens: stderr, so stdout stays for output
    that tools read (config example, reports)."""
    return ServerConsole(stderr=True, highlight=False, **kwargs)


class RateLimitedLog:
    """Log lines about one kind of event (a reason) at a bounded rate.

    Up to ``burst`` lines per key in each ``interval`` seconds are logged as
    they come; past that they are only counted, and ``flush`` (called about
    once a second by the owner) logs one line per key with the number left out
    once the interval is over. A flood of bad connections costs a few lines,
    not one per connection.
    """

    def __init__(
        self,
        logger: logging.Logger,
        burst: int = 10,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._window_start: dict[str, float] = {}
        self._logged: dict[str, int] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = self.clock()
        start = self._window_start.get(key)
        if start is not None and now - start >= self.interval:
            self._end_window(key)
            start = None
        if start is None:
            self._window_start[key] = now
        logged = self._logged.get(key, 0)
        if logged < self.burst:
            self._logged[key] = logged + 1
            self.logger.log(level, msg, *args)
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1

    def warning(self, key: str, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def info(self, key: str, msg: str, *args: object) -> None:
        self.log(logging.INFO, key, msg, *args)

    def flush(self) -> None:
        """Report the keys whose window is over and that had lines left out."""
        now = self.clock()
        for key, start in list(self._window_start.items()):
            if now - start >= self.interval:
                self._end_window(key)

    def _end_window(self, key: str) -> None:
        left_out = self._suppressed.pop(key, 0)
        if left_out:
            self.logger.warning(
                "%d more %s lines left out in the last %.0f s", left_out, key, self.interval
            )
        del self._window_start[key]
        self._logged.pop(key, None)


class OutageLog:
    """One warning when a dependency (the key store) starts failing and one
    info line when it answers again: a line per outage, not per request."""

    __slots__ = ("down", "failures", "logger", "outages", "what")

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.down = False
        self.outages = 0
        self.failures = 0

    def failed(self, exc: BaseException, consequence: str) -> None:
        self.failures += 1
        if not self.down:
            self.down = True
            self.outages += 1
            self.logger.warning(
                "%s unavailable (%s): %s until it answers again", self.what, exc, consequence
            )

    def answered(self) -> None:
        if self.down:
            self.down = False
            self.logger.info("%s answers again (%d requests failed)", self.what, self.failures)
