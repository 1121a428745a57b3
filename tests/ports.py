"""A free loopback port for a process a test starts (its own module, so that helpers conftest
imports, such as :mod:`tests.moto_process`, can use it too)."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
