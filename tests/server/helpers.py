"""Run the server app on a free loopback port inside a test's event loop."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp.test_utils import TestServer

from tokenlm.server import protocol as P
from tokenlm.server.app import SERVER_KEY, create_app
from tokenlm.server.client import Client


@contextlib.asynccontextmanager
async def running(engines: dict, unavailable: dict | None = None, frame_wait: float | None = None):
    app = create_app(engines, unavailable, frame_wait)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        server.ws_url = str(server.make_url("/ws"))
        server.app_server = app[SERVER_KEY]
        yield server
    finally:
        await server.close()


def run(coro, timeout: float = 30.0):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def collect(c: Client, until=None, timeout: float = 10.0) -> list[P.Message]:
    """Messages until the server closes, or until ``until(msg)`` is true (that message included)."""
    out = []
    while True:
        msg = await c.recv(timeout=timeout)
        if msg is None:
            return out
        out.append(msg)
        if until is not None and until(msg):
            return out


def acks(msgs) -> list[dict]:
    return [m.data for m in msgs if m.kind == P.CONTROL and m.data.get("event") == "frame"]


def errors(msgs) -> list[dict]:
    return [m.data for m in msgs if m.kind == P.ERROR]


def is_event(name):
    return lambda m: m.kind == P.CONTROL and m.data.get("event") == name
