"""Options that set a field of a config dataclass, with that field's default.

The defaults of the servers, the store, the dummy and the demo live in their
config dataclasses (``LoginConfig``, ``StoreConfig``, ``DummyConfig``, ...);
the CLI reads them from there and writes none of its own::

    @setting(LoginConfig, "--handoff-timeout", type=Seconds(min=0.05), help="...")

is ``--handoff-timeout`` with the default of ``LoginConfig.handoff_timeout``
(shown in ``--help`` and ``serverlink config example``), and
``build(ctx, LoginConfig, ...)`` makes the command's LoginConfig from the values
of its settings of that class, which click has taken from the flag, the
environment, the config file or that default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import click

from serverlink import logs
from serverlink.store.keys import KeyStoreUrlError, check_key_store_url

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def default_of(config: type[Any], name: str) -> Any:
    """The default of the field ``name`` of the dataclass ``config`` (its
    ``default_factory`` called). Read from the dataclass's fields: the class
    attribute of a slotted dataclass is a slot, not the default."""
    for found in dataclasses.fields(config):
        if found.name != name:
            continue
        if found.default is not dataclasses.MISSING:
            return found.default
        if callable(found.default_factory):
            return found.default_factory()
        raise TypeError(f"{config.__name__}.{name} has no default")
    raise AttributeError(f"{config.__name__} has no field {name!r}")


def _param_name(decls: Sequence[str]) -> str:
    """The parameter name click gives an option declared with ``decls``."""
    for decl in decls:
        if decl.isidentifier():
            return decl
    longest = max(decls, key=lambda d: (d.startswith("--"), len(d)))
    return longest.lstrip("-").replace("-", "_")


class Setting(click.Option):
    """An option that sets the field ``field`` (by default the option's name) of
    the dataclass ``config``; without a ``default=`` its default is the field's.
    A pair of fields (host, port) is one ``HOST:PORT`` option; a triple (host,
    port, more) one ``HOST:PORT[,...]`` option: the first address, and the
    others in ``more`` (a tuple of pairs)."""

    def __init__(
        self,
        param_decls: Sequence[str],
        *,
        config: type[Any],
        field: str | tuple[str, ...] | None = None,
        shared_database: bool = False,
        **attrs: Any,
    ) -> None:
        self.config = config
        #: The shared account database (``[database] url``, SERVERLINK_DATABASE_URL).
        self.shared_database = shared_database
        self.field = field or _param_name(param_decls)
        if "default" not in attrs:
            if isinstance(self.field, tuple):
                host, port = (default_of(config, name) for name in self.field[:2])
                attrs["default"] = f"{host}:{port}"
            else:
                attrs["default"] = default_of(config, self.field)
            attrs.setdefault("show_default", True)
        super().__init__(param_decls, **attrs)

    def values(self, value: Any) -> dict[str, Any]:
        """The fields this option sets to ``value``."""
        if isinstance(self.field, tuple) and len(self.field) == 3:
            (host, port), *more = value
            return dict(zip(self.field, (host, port, tuple(more)), strict=True))
        if isinstance(self.field, tuple):
            return dict(zip(self.field, value, strict=True))
        return {self.field: value}


def setting(config: type[Any], *decls: str, **attrs: Any) -> Callable[[F], F]:
    """``click.option(*decls, **attrs)`` as a Setting of ``config``."""
    return click.option(*decls, cls=Setting, config=config, **attrs)


def build(ctx: click.Context, config: type[T], **given: Any) -> T:
    """``config`` from the values of the command's settings of that class, and
    the fields in ``given`` (the parts the command makes itself)."""
    values: dict[str, Any] = {}
    for p in ctx.command.params:
        if isinstance(p, Setting) and p.config is config and p.name in ctx.params:
            values.update(p.values(ctx.params[p.name]))
    return config(**{**values, **given})


def apply(options: Sequence[Callable[[F], F]]) -> Callable[[F], F]:
    """The decorators ``options`` as one, in the order written."""

    def decorate(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


class Opt(NamedTuple):
    """One row of ``options_of``: the flag (and parameter name), the value type,
    the help, and other ``click.option`` arguments."""

    decls: tuple[str, ...]
    type: Any
    help: str
    attrs: Mapping[str, Any]


def opt(decls: str | tuple[str, ...], type: Any, help: str, **attrs: Any) -> Opt:
    return Opt((decls,) if isinstance(decls, str) else decls, type, help, attrs)


def options_of(config: type[Any], *rows: Opt) -> Callable[[F], F]:
    """The settings ``rows`` of ``config``, as one decorator."""
    return apply([setting(config, *r.decls, type=r.type, help=r.help, **r.attrs) for r in rows])


if TYPE_CHECKING:
    _HostPortBase = click.ParamType[tuple[str, int]]
    _HostPortsBase = click.ParamType[tuple[tuple[str, int], ...]]
    IntPairType = click.ParamType[tuple[int, int]]
else:  # click < 8.2 has no generic ParamType at run time
    _HostPortBase = _HostPortsBase = IntPairType = click.ParamType


PORT = click.IntRange(0, 65535)
BYTE = click.IntRange(0, 255)
LOG_LEVEL = click.Choice(logs.LEVELS, case_sensitive=False)


class HostPort(_HostPortBase):
    """``HOST:PORT`` (``[v6addr]:PORT`` for IPv6) -> (host, port)."""

    name = "HOST:PORT"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, int]:
        if isinstance(value, tuple):
            host, port = value
            return str(host), int(port)
        text = str(value).strip()
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or not port_text:
            self.fail(f"{text!r} is not HOST:PORT", param, ctx)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            self.fail(f"{text!r}: write an IPv6 address as [ADDR]:PORT", param, ctx)
        try:
            port = int(port_text)
        except ValueError:
            self.fail(f"{text!r}: port {port_text!r} is not a number", param, ctx)
        if not 0 < port < 65536:
            self.fail(f"{text!r}: port {port} is not in 1-65535", param, ctx)
        return host, port


ADDRESS = HostPort()


class HostPorts(_HostPortsBase):
    """``HOST:PORT[,HOST:PORT...]`` -> ((host, port), ...): several servers of one kind."""

    name = "HOST:PORT[,...]"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[tuple[str, int], ...]:
        if isinstance(value, tuple | list):
            return tuple(ADDRESS.convert(one, param, ctx) for one in value)
        parts = [part for part in str(value).split(",") if part.strip()]
        if not parts:
            self.fail(f"{value!r}: give HOST:PORT, or several separated by commas", param, ctx)
        addresses = tuple(ADDRESS.convert(part, param, ctx) for part in parts)
        if len(set(addresses)) != len(addresses):
            self.fail(f"{value!r} names a server twice", param, ctx)
        return addresses


ADDRESSES = HostPorts()


class KeyStoreUrl(click.types.StringParamType):
    """``memory`` or a ``redis://`` URL, checked now (a config error, not a
    failure at the first login)."""

    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            check_key_store_url(str(value))
        except KeyStoreUrlError as exc:
            self.fail(str(exc).removeprefix("--key-store "), param, ctx)
        return str(value)


KEY_STORE_URL = KeyStoreUrl()


class Seconds(click.FloatRange):
    """A number of seconds (FloatRange, shown as SECONDS)."""

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SECONDS"


#: The metavars of the command line: one word per kind of value.
METAVARS = (
    "SECONDS",
    "BYTES",
    "HOST:PORT",
    "HOST:PORT[,...]",
    "HOST",
    "PORT",
    "URL",
    "N",
    "FILE",
    "NAME",
    "PROBABILITY",
    "IP",
    "X,Y",
    "DURATION",  # a span of history: 90s, 15m, 1h, 7d (a bare number is seconds)
)


def metavar_of(option: click.Option) -> str | None:
    """The metavar of an option that names none: PORT for a port, N for other
    integers, HOST for --host-like strings, NAME for other strings; None for
    flags, choices and types that show their own (Seconds, HOST:PORT)."""
    kind = option.type
    if option.is_flag or isinstance(kind, click.Choice | Seconds) or kind.name.startswith("HOST:"):
        return None
    if isinstance(kind, click.types.IntParamType):
        return "PORT" if (option.name or "").endswith("port") else "N"
    if isinstance(kind, click.types.StringParamType):
        return "HOST" if (option.name or "").endswith("host") else "NAME"
    return None


def assign_metavars(cmd: click.Command) -> None:
    """Give every option of ``cmd`` and its subcommands without a metavar the
    one of its kind (``metavar_of``)."""
    for param in cmd.params:
        if isinstance(param, click.Option) and param.metavar is None:
            param.metavar = metavar_of(param)
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            assign_metavars(sub)
