"""A TCP proxy between the store and MariaDB that a test cuts at a chosen moment.

The store's driver sees a real broken connection (the socket closed under it),
as after a network failure or a crash, at a moment the test picks:

- ``cut_on(marker, deliver=False)``: the next client packet that contains
  ``marker`` (e.g. the text of a statement) is dropped and its connection cut:
  the statement never reached the server;
- ``cut_on(marker, deliver=True)``: that packet reaches the server, and the
  connection is cut when the server's answer arrives, which is dropped: the
  statement was applied, the client never learns it;

``seen[marker]`` counts the client packets that carried a watched marker (one
per attempt of a statement), ``accepted`` the connections made through the
proxy, ``cuts`` the connections it cut.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class _Cut:
    marker: bytes
    deliver: bool
    times: int


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    cut_on_answer: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def cut(self) -> None:
        self.client.transport.abort()
        self.server.transport.abort()


class CuttingProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.accepted = 0
        self.seen: Counter[bytes] = Counter()
        self.cuts = 0
        self._cuts: list[_Cut] = []
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def close(self) -> None:
        tasks = [task for link in self._links for task in link.tasks]
        for link in list(self._links):
            self._drop(link)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def watch(self, *markers: bytes) -> None:
        """Count the client packets that carry each of ``markers`` in ``seen``."""
        for marker in markers:
            self.seen.setdefault(marker, 0)

    def cut_on(self, marker: bytes, *, deliver: bool, times: int = 1) -> None:
        """Cut the connection of each of the next ``times`` client packets that carry
        ``marker`` (see the module docstring)."""
        self.watch(marker)
        self._cuts.append(_Cut(marker, deliver, times))

    def _cut(self, link: _Link) -> None:
        self.cuts += 1
        self._drop(link)

    def _drop(self, link: _Link) -> None:
        link.cut()
        self._links.discard(link)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        link = _Link(client_w, server_w)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._client_to_server(link, client_r)),
            asyncio.create_task(self._server_to_client(link, server_r)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        if link in self._links:
            self._drop(link)

    def _take_cut(self, data: bytes) -> _Cut | None:
        for marker in self.seen:
            if marker in data:
                self.seen[marker] += 1
        for cut in self._cuts:
            if cut.marker in data:
                cut.times -= 1
                if cut.times == 0:
                    self._cuts.remove(cut)
                return cut
        return None

    async def _client_to_server(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                cut = self._take_cut(data)
                if cut is not None and not cut.deliver:
                    self._cut(link)
                    return
                if cut is not None:
                    link.cut_on_answer = True
                link.server.write(data)
                await link.server.drain()
        if link in self._links:  # the client hung up: pass it on
            self._drop(link)

    async def _server_to_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if link.cut_on_answer:  # the answer to a delivered statement is lost
                    self._cut(link)
                    return
                link.client.write(data)
                await link.client.drain()
        if link in self._links:  # the server hung up: pass it on
            self._drop(link)
