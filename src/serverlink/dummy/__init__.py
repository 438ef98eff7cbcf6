"""The dummy load client. Python entry points::

    run_dummy(config, on_tick=None) -> DummyResult           # own event loop, Ctrl-C stops
    await run_dummy_async(config, on_tick=None, stop=None)   # in the running loop

``serverlink.dummy.dashboard.run_with_display`` adds the live dashboard and the
summary table; ``serverlink.cli.dummy:dummy_command`` is the click command.
"""

from serverlink.dummy.config import DummyConfig
from serverlink.dummy.result import DummyResult
from serverlink.dummy.run import run_dummy, run_dummy_async

__all__ = ["DummyConfig", "DummyResult", "run_dummy", "run_dummy_async"]
