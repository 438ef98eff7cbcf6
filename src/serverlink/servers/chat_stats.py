"""What the chat server counts (``ChatStats``) and its console screen
(``CHAT_SCREEN``, over ``ChatServer.snapshot()``)."""

from __future__ import annotations

from dataclasses import dataclass

from serverlink.monitor.screen import (
    Row,
    ScreenSpec,
    View,
    breakdown,
    fmt,
    of,
    process_row,
    rate,
    value,
)


@dataclass(slots=True, eq=False)
class ChatStats:
    logins: int = 0
    moves: int = 0
    #: Messages accepted and fanned out.
    messages_in: int = 0
    #: Messages of players in no sector (not moved yet): heard by nobody.
    messages_nowhere: int = 0
    #: Messages dropped because their sender was muted.
    messages_muted: int = 0
    #: Times a player went past the flood limit and was muted.
    mutes: int = 0


def _linked(view: View) -> bool:
    return "login_link" in view.snapshot


CHAT_SCREEN = ScreenSpec(
    "chat",
    (
        Row("Sessions", (of("sessions", "max_sessions"), value("sessions_peak", "peak"))),
        Row("Players", (value("players"), rate("logins", "logins"), value("login_fail", "fail"))),
        Row(
            "Sectors",
            (
                value("sectors_occupied", "occupied"),
                value("sector_players_max", "players max"),
                fmt("mean {sector_players_mean:.1f}"),
            ),
        ),
        Row("Messages in", (rate("messages_in"), value("messages_in", "total"))),
        Row("Deliveries out", (rate("deliveries"), rate("fanout_writes", "writes"))),
        Row(
            "Flood",
            (
                value("muted", "muted now"),
                value("mutes", "mutes"),
                value("messages_muted", "messages dropped"),
            ),
        ),
        Row(
            "Login server",
            (fmt("{login_link}"), value("handoffs", "hand-offs"), value("keys_waiting", "keys")),
            when=_linked,
        ),
        Row("Packets in", (rate("packets_in"), value("packets_in", "total"))),
        process_row(),
        breakdown("Disconnects", "disconnects"),
        breakdown("Protocol errors", "errors"),
    ),
)
