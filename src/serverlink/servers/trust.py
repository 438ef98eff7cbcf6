"""Who may connect to a server-to-server (LAN) port: one rule for the login
server's (game and chat servers link there) and the monitoring server's
(servers report there)."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def peer_trusted(ip: str, trusted: Collection[str], allow_any: bool = False) -> bool:
    """An address in ``trusted`` (the login server's whiteip table, the
    monitoring server's --lan-allow); while that is empty, loopback only,
    unless ``allow_any``."""
    return ip in trusted or allow_any or (not trusted and is_loopback(ip))
