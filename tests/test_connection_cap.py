"""The connection cap's choice of whom to close (see ``service.web.listener``): a connection whose
whole request head has arrived but not been read yet is never taken for a slow client. CI saw
a webhook accepted in the same burst as a slow-loris attack reset before the loop read it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from service.web.listener import ConnectionCap, _head_arrived

HEAD = b"POST /telephony/twilio/voice HTTP/1.1\r\nHost: callvault\r\nContent-Length: 0\r\n\r\n"


class _Transport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None


class _Handler:
    """What the cap reads of aiohttp's handler: its transport and whether it has a request."""

    _request_in_progress = False
    _messages: tuple[object, ...] = ()

    def __init__(self, sock: socket.socket) -> None:
        self.transport = _Transport(sock)


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made: list[tuple[socket.socket, socket.socket]] = []
    yield made
    for a, b in made:
        a.close()
        b.close()


def _connection(pairs: list[tuple[socket.socket, socket.socket]], sent: bytes) -> _Handler:
    server_end, client_end = socket.socketpair()
    pairs.append((server_end, client_end))
    if sent:
        client_end.sendall(sent)
    return _Handler(server_end)


def test_a_whole_head_in_the_buffer_is_seen_without_being_read(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    whole = _connection(pairs, HEAD)
    assert _head_arrived(whole)  # type: ignore[arg-type]
    assert whole.transport.sock.recv(4096) == HEAD  # peeked, not consumed
    assert not _head_arrived(_connection(pairs, b"POST / HTTP/1.1\r\nX-Slow: 1\r\n"))  # type: ignore[arg-type]
    assert not _head_arrived(_connection(pairs, b""))  # type: ignore[arg-type]


def test_the_cap_closes_a_trickling_socket_never_a_webhook_not_yet_read(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    now = [100.0]
    cap = ConnectionCap(None, limit=3, grace_s=1.0, clock=lambda: now[0])  # type: ignore[arg-type]
    webhook = _connection(pairs, HEAD)  # the oldest, its head arrived, unread
    slow = _connection(pairs, b"POST / HTTP/1.1\r\nX-Slow: 1\r\n")
    young = _connection(pairs, b"")
    cap._opened = {webhook: 90.0, slow: 95.0, young: 99.9}  # type: ignore[dict-item]
    listed: list[Any] = [webhook, slow, young]  # aiohttp lists them oldest first
    assert cap._victim(listed, now[0]) is slow
    # nobody has had the grace: still the oldest waiting that has not sent its head
    cap._opened = {webhook: 99.5, slow: 99.6, young: 99.9}  # type: ignore[dict-item]
    assert cap._victim(listed, now[0]) is slow
    # only webhooks with their heads in: nobody is closed, the newcomer is refused
    assert cap._victim([webhook], now[0]) is None
