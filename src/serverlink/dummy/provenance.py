"""What makes reports of different runs comparable: when and where a run
happened, with which serverlink and Python, from which command line; and
figures rounded to what they can tell."""

from __future__ import annotations

import platform
import shlex
import socket
import sys
from typing import Any

from serverlink import __version__
from serverlink.logs import utc_stamp


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (``serverlink dummy --clients 10``), for the report."""
    args = list(sys.argv if argv is None else argv)
    if args and (args[0].endswith("serverlink") or args[0].endswith("__main__.py")):
        args[0] = "serverlink"
    return shlex.join(args)


def provenance(started_at: float) -> dict[str, Any]:
    return {
        "started_at": utc_stamp(started_at) if started_at else None,
        "serverlink_version": __version__,
        "host": socket.gethostname(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "command": command_line(),
    }


def rounded(value: Any, digits: int = 3) -> Any:
    """Floats rounded to ``digits`` decimals (ms to the µs, seconds to the ms),
    through dicts and lists; integers and the rest as they are."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, digits) for v in value]
    return value
