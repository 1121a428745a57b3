"""A small asyncio TCP proxy for fault tests: forwards to a target (a TCP address or a Unix
socket), and can refuse new connections and cut the open ones (a bucket that is down), hang
(accept and keep every byte: a server that stopped answering), then come back."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, *, unix_path: str | None = None) -> None:
        self.target = (target_host, target_port)
        self.unix_path = unix_path
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.server: asyncio.Server | None = None
        self.down = False
        self.refused = 0
        self._pipes: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def close(self) -> None:
        self.down = True
        self._flowing.set()  # let held connections see that the proxy is closing
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def go_down(self) -> None:
        """Refuse every new connection and cut the open ones."""
        self.down = True
        self.cut()

    def come_back(self) -> None:
        self.down = False
        self._flowing.set()

    def hang(self) -> None:
        """Accept new connections and keep open ones, but forward nothing either way."""
        self._flowing.clear()

    def cut(self) -> None:
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.refused += 1
            writer.transport.abort()
            return
        self._pipes.add(writer)
        await self._flowing.wait()
        if self.down:
            writer.transport.abort()
            return
        try:
            if self.unix_path is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes.discard(writer)
        self._pipes.discard(up_writer)
