"""A small asyncio client for the streaming protocol (used by the tests and the load test).

    async with Client.connect("ws://127.0.0.1:8998/ws", "asr") as c:
        await c.send_audio(pcm_int16)           # any number of samples; numbered 0, 1, 2, ...
        await c.end()
        async for msg in c:                      # protocol.Message objects until the server closes
            ...
"""

from __future__ import annotations

import time

import aiohttp

from . import protocol as P

__all__ = ["Client", "ServerError"]


class ServerError(RuntimeError):
    def __init__(self, message: str, fatal: bool):
        super().__init__(message)
        self.fatal = fatal


class Client:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, owns: bool):
        self.http, self.ws, self._owns = session, ws, owns
        self.info: dict = {}
        self.seq = 0
        self.sent_at: dict[int, float] = {}  # audio message number -> time.perf_counter() when sent

    @classmethod
    async def open(cls, url: str, session: aiohttp.ClientSession | None = None) -> Client:
        """Connect without a handshake (for tests of malformed input)."""
        owns = session is None
        session = session or aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, max_msg_size=0)
        except Exception:
            if owns:
                await session.close()
            raise
        return cls(session, ws, owns)

    @classmethod
    def connect(cls, url: str, mode: str, session: aiohttp.ClientSession | None = None) -> _Connect:
        """``async with Client.connect(url, mode) as c``: connect and handshake (raises
        :class:`ServerError` if the server refuses)."""
        return _Connect(cls, url, mode, session)

    async def handshake(self, mode: str, **extra) -> dict:
        await self.send_raw(P.pack_handshake({"protocol": P.PROTOCOL, "version": P.VERSION, "mode": mode, **extra}))
        msg = await self.recv()
        if msg is None:
            raise ServerError("the server closed the connection during the handshake", True)
        if msg.kind == P.ERROR:
            raise ServerError(msg.data["error"], msg.data.get("fatal", True))
        if msg.kind != P.HANDSHAKE:
            raise ServerError(f"expected a handshake reply, got a {msg.name} message", True)
        self.info = msg.data
        return self.info

    async def send_raw(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def send_audio(self, pcm) -> int:
        """Send mono samples (int16 or floats in [-1, 1]); returns the message's sequence number."""
        seq = self.seq
        self.seq = (self.seq + 1) % 2**32
        self.sent_at[seq] = time.perf_counter()
        await self.ws.send_bytes(P.pack_audio(seq, pcm))
        return seq

    async def say(self, text: str) -> None:
        await self.ws.send_bytes(P.pack_say(text))

    async def control(self, action: str, **extra) -> None:
        await self.ws.send_bytes(P.pack_control({"action": action, **extra}))

    async def end(self) -> None:
        await self.control("end")

    async def recv(self, timeout: float | None = None) -> P.Message | None:
        """The next message from the server, or None once the connection is closed."""
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type == aiohttp.WSMsgType.BINARY:
                return P.parse(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.ERROR):
                return None

    def __aiter__(self):
        return self

    async def __anext__(self) -> P.Message:
        msg = await self.recv()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def close(self) -> None:
        try:
            await self.ws.close()
        finally:
            if self._owns:
                await self.http.close()


class _Connect:
    def __init__(self, cls, url, mode, session):
        self.args = cls, url, mode, session
        self.client: Client | None = None

    async def __aenter__(self) -> Client:
        cls, url, mode, session = self.args
        self.client = await cls.open(url, session)
        try:
            await self.client.handshake(mode)
        except BaseException:
            await self.client.close()
            raise
        return self.client

    async def __aexit__(self, *exc) -> None:
        await self.client.close()
