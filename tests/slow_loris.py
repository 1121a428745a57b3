"""A slow-loris attacker as its own process (so the test's client is not starved by it):
``python -m tests.slow_loris PORT SOCKETS SECONDS [INTERVAL]``. Each socket sends a request
line, then a header line every INTERVAL seconds (default 0.5), never the end of the head; a
socket the server closes is opened again two seconds later. Prints ``{"opened",
"closed_by_server"}`` as JSON when time is up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys


class SlowLoris:
    def __init__(self, port: int, interval_s: float = 0.5) -> None:
        self.port = port
        self.interval_s = interval_s
        self.opened = 0
        self.closed_by_server = 0
        self.stop = asyncio.Event()

    async def _pace(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def one(self) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await self._pace(2.0)
                continue
            self.opened += 1
            try:
                writer.write(b"POST /telephony/twilio/voice HTTP/1.1\r\nHost: callvault\r\n")
                while not self.stop.is_set():
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        # the server answers nothing to a head that never ends; EOF = closed
                        if await asyncio.wait_for(reader.read(1024), self.interval_s) == b"":
                            self.closed_by_server += 1
                            break
                    writer.write(b"X-Slow: 1\r\n")
            except OSError:
                self.closed_by_server += 1
            finally:
                writer.transport.abort()
            await self._pace(2.0)


async def main(port: int, sockets: int, seconds: float, interval_s: float = 0.5) -> None:
    loris = SlowLoris(port, interval_s)
    tasks = [asyncio.create_task(loris.one()) for _ in range(sockets)]
    await loris._pace(seconds)
    loris.stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"opened": loris.opened, "closed_by_server": loris.closed_by_server}))


if __name__ == "__main__":
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), interval))
