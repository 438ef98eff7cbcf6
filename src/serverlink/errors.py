"""Errors shared across layers."""

from __future__ import annotations


class StartupError(Exception):
    """A server cannot start for a reason the user can fix (database unreachable,
    schema missing, ...). The message is one line; the CLI prints it and exits 1."""
