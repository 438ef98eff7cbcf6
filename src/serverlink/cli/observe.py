"""The options of the monitoring side, declared once: who may connect to a
server-to-server port (login and monitoring servers), where a server reports
(``--monitor``, ``--metrics-port``: every server the runner runs), the
dashboard's port (monitor and demo), and durations (``7d``, ``1h``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from serverlink.cli.defaults import opt, options_of
from serverlink.cli.options import ADDRESS, PORT
from serverlink.servers.reporter import ObserveConfig
from serverlink.store.history import parse_duration

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:
    _DurationBase = click.ParamType[float]
else:  # click < 8.2 has no generic ParamType at run time
    _DurationBase = click.ParamType


class Duration(_DurationBase):
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds."""

    name = "DURATION"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()


def lan_side_options(config: type[Any]) -> Callable[[F], F]:
    """The server-to-server (LAN) port of the login or the monitoring server,
    and who may connect there (``servers.trust``)."""
    return options_of(
        config,
        opt("--lan-host", None, "Address of the server-to-server (LAN) port (default: --host)."),
        opt(
            "--lan-port",
            PORT,
            "Server-to-server port: where game/chat servers register (login server), "
            "where servers report (monitoring server).",
        ),
        opt(
            "--lan-allow-any",
            None,
            "Let servers connect to the LAN port from any address while none is trusted "
            "(the login server's whiteip table, the monitoring server's --lan-allow); else "
            "loopback only. A server linked to a login server receives every login's key.",
            is_flag=True,
        ),
    )


def http_port_option(config: type[Any]) -> Callable[[F], F]:
    """--http-port of the monitoring server (its own, and the demo's)."""
    return options_of(
        config,
        opt(
            "--http-port",
            PORT,
            "Port of the monitoring dashboard, its JSON API and /metrics (0: a free port).",
        ),
    )


observe_options = options_of(
    ObserveConfig,
    opt(
        "--monitor",
        ADDRESS,
        "The monitoring server's LAN address: report this server's figures there once a second.",
        default=None,
    ),
    opt(
        "--monitor-server-no",
        click.IntRange(0, 255),
        "ServerNo to report as (0: the kind's own: login 1, game 2, chat 3); give each "
        "server of one kind its own.",
    ),
    opt(
        "--metrics-port",
        PORT,
        "Serve /metrics (Prometheus), /healthz and /readyz of this server on this port "
        "(0: a free one; default: none); a linked game or chat server's also takes "
        "POST /drain and POST /resume (no new players; SIGUSR1 toggles the same).",
        default=None,
    ),
    opt("--metrics-host", None, "Address of the --metrics-port."),
)
