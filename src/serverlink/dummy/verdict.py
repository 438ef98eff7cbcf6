"""When a dummy run cannot measure anything, it says why at once instead of
counting failures for its whole ``--seconds`` (or forever with 0).

``hopeless(config, agg)`` is asked once a second: not one connection ever
made (nothing listens at the target), or in echo mode every game login
refused (a linked game server, which takes only keys its login server handed
over: the hint is ``--mode login``; or the wrong ``--client-version``).
"""

from __future__ import annotations

from serverlink.dummy.config import DummyConfig
from serverlink.dummy.metrics import Aggregate
from serverlink.protocol.status import GameLoginStatus

_REFUSED = "login:status_"


def hopeless(config: DummyConfig, agg: Aggregate) -> str | None:
    """Why the run cannot go on, or None while something works."""
    totals = agg.totals
    if totals["connect_total"] and totals["connect_fail"] == totals["connect_total"]:
        reasons = sorted({k.rpartition(":")[2] for k in agg.details if k.startswith("connect:")})
        return (
            f"no client could connect to {config.target} ({', '.join(reasons) or 'failed'}): "
            "is the server running, and is that its address?"
        )
    if config.mode == "echo" and totals["login_fail"] and not totals["login_ok"]:
        statuses = {int(k[len(_REFUSED) :]) for k in agg.details if k.startswith(_REFUSED)}
        if statuses == {GameLoginStatus.VERSION_MISMATCH}:
            return (
                f"every login was refused by the game server at {config.game_address} "
                f"(Status VERSION_MISMATCH): --client-version must be the server's "
                f"(sent {config.version})"
            )
        return (
            f"every login was refused by the game server at {config.game_address}: it is "
            "linked to a login server and accepts only the keys that server hands over; "
            "use --mode login --login-server HOST:PORT --keys FILE"
        )
    return None
