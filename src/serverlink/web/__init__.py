"""HTTP faces of serverlink: the monitoring dashboard (``dashboard``), each
server's own /metrics, /healthz and /readyz (``probe``), the Prometheus
collectors (``metrics``) and the dummy's HTML report (``report``), on aiohttp
in the server's own event loop. The chart library (uPlot) ships in ``static``."""

from importlib import resources


def static_bytes(name: str) -> bytes:
    """A file of ``web/static`` (shipped as package data)."""
    return resources.files("serverlink.web").joinpath("static", name).read_bytes()
