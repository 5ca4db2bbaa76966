"""The streaming server: a browser page at ``/``, the websocket protocol at ``/ws``, ``/api/info``.

One :class:`ModeWorker` per mode owns that mode's engine. It steps **all live sessions of the mode
together** in one batched ``engine.step``, run in the engine's own worker thread so that the event
loop keeps receiving audio meanwhile. Each session cuts its incoming samples into ``hop_length``
frames; a step happens as soon as every streaming session has a frame queued, or when the oldest
queued frame has waited one frame period (40 ms), and then only the sessions with a frame advance:
frames are never dropped, reordered or invented. TTS sessions are stepped at real-time pace (a
little ahead) while they have text to speak.

Every engine call (open, close, step, flush, say) runs in that one thread, in order, so a session
that goes away while a step is in flight is closed after it, and outputs of a closed (or reset)
session are discarded.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import signal
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiohttp import WSMsgType, web

from ..errors import TokenLMError
from . import protocol as P

__all__ = ["Server", "ModeWorker", "create_app", "load_engines", "run_server", "serve_command", "STATIC_DIR",
           "SERVER_KEY"]

log = logging.getLogger("tokenlm.server")

STATIC_DIR = Path(__file__).resolve().parent / "static"
IDLE_SECONDS = 0.5  # a session that sent no audio for this long does not hold up the others' steps
TTS_LEAD_FRAMES = 5  # TTS runs this many frames (200 ms) ahead of real time
MAX_BACKLOG_SECONDS = 30.0  # queued input audio beyond this is a client sending faster than real time
MAX_OUTGOING = 4000  # messages waiting for a client that does not read


@dataclass
class _Frame:
    samples: np.ndarray | None  # float32 [hop]; None: "no audio" (not used by clients)
    seq: int | None
    arrived: float


@dataclass(eq=False)
class Session:
    id: int
    ws: web.WebSocketResponse
    peer: str
    mode: str | None = None
    slot: int | None = None
    generation: int = 0  # bumped by reset: outputs of steps taken before it are dropped
    buf: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    frames: deque = field(default_factory=deque)
    last_seq: int | None = None
    last_audio: float = 0.0
    frames_out: int = 0
    inflight: int = 0  # frames of this session in the step that is running
    ending: bool = False
    finishing: bool = False
    closed: bool = False
    close_reason: str = "client disconnected"
    opened: float = field(default_factory=time.monotonic)
    outgoing: asyncio.Queue = field(default_factory=asyncio.Queue)
    # tts
    speaking: bool = False
    tts_t0: float = 0.0
    tts_frames: int = 0

    def send(self, data: bytes | None) -> None:
        """Queue a message for the client (``None``: close the connection after what is queued)."""
        if self.closed and data is not None:
            return
        if data is not None and self.outgoing.qsize() > MAX_OUTGOING:
            self.close_reason = "client does not read its messages"
            data = None
        if data is None:
            self.closed = True
        self.outgoing.put_nowait(data)

    def error(self, message: str, fatal: bool = False) -> None:
        self.send(P.pack_error(message, fatal))
        if fatal:
            self.close_reason = f"error: {message}"
            self.send(None)


class ModeWorker:
    """The sessions of one mode and the task that steps them together."""

    def __init__(self, mode: str, engine, frame_wait: float | None = None):
        self.mode, self.engine = mode, engine
        self.hop = int(engine.hop_length)
        self.period = 1.0 / float(engine.frame_rate)
        self.frame_wait = self.period if frame_wait is None else frame_wait
        self.sessions: dict[int, Session] = {}  # slot -> session
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tokenlm-{mode}")
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.steps = self.frames = 0
        self.step_seconds = 0.0
        self.max_batch = 0

    # ---- engine calls, all in the worker thread ----

    async def call(self, fn, *args):
        def run():
            import torch

            with torch.inference_mode():
                return fn(*args)

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    async def open(self, session: Session) -> int:
        slot = await self.call(self.engine.open)
        self.sessions[slot] = session
        session.mode, session.slot = self.mode, slot
        return slot

    async def close(self, session: Session) -> None:
        slot = session.slot
        if slot is None or self.sessions.get(slot) is not session:
            return
        del self.sessions[slot]
        session.slot = None
        await self.call(self.engine.close, slot)
        self.wake.set()

    async def reset(self, session: Session) -> None:
        old = session.slot

        def reopen():
            self.engine.close(old)
            return self.engine.open()

        session.generation += 1
        session.frames.clear()
        session.buf = np.zeros(0, np.float32)
        session.last_seq, session.frames_out = None, 0
        session.speaking, session.ending = False, False
        del self.sessions[old]
        slot = await self.call(reopen)
        self.sessions[slot] = session
        session.slot = slot

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"tokenlm-{self.mode}-steps")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    @property
    def live(self) -> int:
        return len(self.sessions)

    def info(self) -> dict:
        e = self.engine
        return {
            "available": True, "live": self.live, "max_sessions": int(e.max_sessions),
            "sample_rate": int(e.sample_rate), "frame_rate": float(e.frame_rate), "hop_length": int(e.hop_length),
            "steps": self.steps, "frames": self.frames, "max_batch": self.max_batch,
            "mean_batch": round(self.frames / self.steps, 3) if self.steps else 0.0,
            "mean_step_ms": round(1000 * self.step_seconds / self.steps, 3) if self.steps else 0.0,
            "step_seconds": round(self.step_seconds, 6),
            "lm_rows_per_session": int(getattr(e, "width", 1)),
        }

    # ---- audio in ----

    def push_audio(self, session: Session, seq: int, pcm: np.ndarray) -> None:
        now = time.monotonic()
        session.last_audio = now
        x = P.to_float32(pcm)
        buf = np.concatenate([session.buf, x]) if session.buf.size else x
        n = buf.size // self.hop
        for i in range(n):
            session.frames.append(_Frame(buf[i * self.hop: (i + 1) * self.hop].copy(), seq, now))
        session.buf = buf[n * self.hop:].copy()
        if len(session.frames) * self.period > MAX_BACKLOG_SECONDS:
            session.error(f"more than {MAX_BACKLOG_SECONDS:.0f} s of audio is waiting to be processed: send audio "
                          "at real-time pace", fatal=True)
            return
        if n:
            self.wake.set()

    def end(self, session: Session) -> None:
        """The client's ``end``: pad the last partial frame with silence, then finish after it."""
        session.ending = True
        if session.buf.size:
            pad = np.zeros(self.hop, np.float32)
            pad[: session.buf.size] = session.buf
            session.frames.append(_Frame(pad, session.last_seq, time.monotonic()))
            session.buf = np.zeros(0, np.float32)
        if self.mode == "asr" and hasattr(self.engine, "finish"):
            # the text lags the audio: frames without audio let it catch up, stepped with everyone else
            for _ in range(self.engine.flush_frames):  # seq None: not the client's, never acknowledged
                session.frames.append(_Frame(None, None, time.monotonic()))
        self._maybe_finish(session)
        self.wake.set()

    async def say(self, session: Session, text: str) -> None:
        await self.call(self.engine.say, session.slot, text)
        if not session.speaking:
            session.speaking, session.tts_t0, session.tts_frames = True, time.monotonic(), 0
        self.wake.set()

    # ---- the stepping loop ----

    def _ready(self, now: float) -> tuple[list[Session], float | None]:
        """Sessions that can advance now, and how long to wait before stepping them (None: now)."""
        if self.mode == "tts":
            ready, soonest = [], None
            for s in self.sessions.values():
                if not s.speaking or s.closed:
                    continue
                due = s.tts_t0 + (s.tts_frames - TTS_LEAD_FRAMES) * self.period
                if due <= now:
                    ready.append(s)
                else:
                    soonest = due if soonest is None else min(soonest, due)
            if ready:
                return ready, None
            return [], (None if soonest is None else soonest - now)
        ready = [s for s in self.sessions.values() if s.frames and not s.closed]
        if not ready:
            return [], None
        streaming = [s for s in self.sessions.values()
                     if not s.closed and (s.frames or (not s.ending and now - s.last_audio < IDLE_SECONDS))]
        if len(ready) >= len(streaming):
            return ready, None
        wait = min(s.frames[0].arrived for s in ready) + self.frame_wait - now
        return (ready, None) if wait <= 0 else (ready, wait)

    async def _wait_ready(self) -> list[Session]:
        while True:
            self.wake.clear()
            ready, wait = self._ready(time.monotonic())
            if ready and wait is None:
                return ready
            if wait is None:
                await self.wake.wait()
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), max(wait, 0.0))
            except asyncio.TimeoutError:
                pass

    async def _run(self) -> None:
        import torch

        while True:
            ready = await self._wait_ready()
            taken: dict[int, tuple[Session, int, int | None]] = {}
            inputs: dict = {}
            for s in ready:
                s.inflight += 1
                if self.mode == "tts":
                    inputs[s.slot] = None
                    taken[s.slot] = (s, s.generation, None)
                    s.tts_frames += 1
                else:
                    fr = s.frames.popleft()
                    inputs[s.slot] = None if fr.samples is None else torch.from_numpy(fr.samples)
                    taken[s.slot] = (s, s.generation, fr.seq)
            t0 = time.perf_counter()
            try:
                outs = await self.call(self.engine.step, inputs)
            except Exception as e:  # an engine failure ends these sessions, not the server
                log.error("%s step failed: %s: %s", self.mode, type(e).__name__, " ".join(str(e).split()))
                for s, _, _ in taken.values():
                    s.inflight -= 1
                    s.error(f"the {self.mode} engine failed: {type(e).__name__}: {e}", fatal=True)
                continue
            self.step_seconds += time.perf_counter() - t0
            self.steps += 1
            self.frames += len(inputs)
            self.max_batch = max(self.max_batch, len(inputs))
            for slot, (s, gen, seq) in taken.items():
                s.inflight -= 1
                if s.closed or gen != s.generation:
                    continue
                out = outs.get(slot)
                if out is not None:
                    self._dispatch(s, out, seq)
                self._maybe_finish(s)

    def _dispatch(self, s: Session, out, seq: int | None) -> None:
        if out.audio is not None:
            s.send(P.pack_audio(out.frame, out.audio))
        if out.words:
            s.send(P.pack_text(out.frame, out.words))
        if seq is None and self.mode == "asr":  # a flush frame after `end`: words only
            return
        s.frames_out = out.frame + 1
        if self.mode == "tts":
            if out.done:
                s.speaking = False
                s.send(P.pack_control({"event": "spoken", "frame": out.frame}))
            return
        s.send(P.pack_control({"event": "frame", "frame": out.frame, "seq": seq}))

    def _maybe_finish(self, s: Session) -> None:
        if not s.ending or s.finishing or s.frames or s.inflight or s.speaking or s.closed:
            return
        s.finishing = True
        asyncio.ensure_future(self._finish(s))

    async def _finish(self, s: Session) -> None:
        gen = s.generation
        words = []
        if self.mode == "asr" and hasattr(self.engine, "flush") and s.slot is not None:
            finish = self.engine.finish if hasattr(self.engine, "finish") else self.engine.flush
            try:
                words = await self.call(finish, s.slot)
            except Exception as e:
                s.error(f"end of stream failed: {type(e).__name__}: {e}", fatal=True)
                return
        if s.closed or gen != s.generation:
            return
        if words:
            s.send(P.pack_text(s.frames_out, words))
        s.send(P.pack_control({"event": "done", "frames": s.frames_out}))
        s.close_reason = "end of stream"
        s.send(None)


class Server:
    """The websocket sessions of every available mode. ``engines``: mode -> engine; ``unavailable``:
    mode -> why not (shown to clients)."""

    def __init__(self, engines: dict, unavailable: dict[str, str] | None = None, frame_wait: float | None = None):
        if not engines:
            raise TokenLMError("no mode can run: " + "; ".join(f"{m}: {r}" for m, r in (unavailable or {}).items()))
        self.engines = dict(engines)
        self.unavailable = dict(unavailable or {})
        self.workers = {m: ModeWorker(m, e, frame_wait) for m, e in self.engines.items()}
        self.sessions: set[Session] = set()
        self._ids = itertools.count(1)

    # ---- app wiring ----

    async def on_startup(self, app) -> None:
        for w in self.workers.values():
            w.start()

    async def on_shutdown(self, app) -> None:
        for s in list(self.sessions):
            if not s.closed:
                s.error("the server is shutting down", fatal=True)
        for s in list(self.sessions):
            try:
                await asyncio.wait_for(s.ws.close(code=1001, message=b"server shutting down"), 2.0)
            except Exception:
                pass

    async def on_cleanup(self, app) -> None:
        for w in self.workers.values():
            await w.stop()

    def info(self) -> dict:
        modes = {m: w.info() for m, w in self.workers.items()}
        for m, why in self.unavailable.items():
            modes[m] = {"available": False, "reason": why}
        return {"protocol": P.PROTOCOL, "version": P.VERSION, "modes": modes,
                "available": [m for m in P.MODES if m in self.workers]}

    async def handle_info(self, request) -> web.Response:
        return web.json_response(self.info())

    async def handle_index(self, request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    # ---- one websocket session ----

    async def handle_ws(self, request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=2 * P.MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        s = Session(next(self._ids), ws, request.remote or "?")
        self.sessions.add(s)
        sender = asyncio.ensure_future(self._sender(s))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await self._on_message(s, msg.data)
                elif msg.type == WSMsgType.TEXT:
                    s.error("text websocket frames are not part of the protocol: send binary messages "
                            "(first byte: the kind)")
                elif msg.type == WSMsgType.ERROR:
                    s.close_reason = f"connection error: {ws.exception()}"
                    break
                if s.closed:
                    break
        except Exception as e:  # never let one session's surprise reach the server
            log.error("session %d: %s: %s", s.id, type(e).__name__, " ".join(str(e).split()))
            s.error(f"internal server error: {type(e).__name__}", fatal=True)
        finally:
            if not s.closed:
                code = ws.close_code
                if code in (1000, 1001):
                    s.close_reason = "client closed the connection"
                elif code is not None and code != 1006:
                    s.close_reason = f"client closed the connection (code {code})"
                s.send(None)
            try:
                await asyncio.wait_for(sender, 5.0)
            except Exception:
                sender.cancel()
            await self._release(s)
            self.sessions.discard(s)
        return ws

    async def _sender(self, s: Session) -> None:
        while True:
            data = await s.outgoing.get()
            if data is None or s.ws.closed:
                break
            try:
                await s.ws.send_bytes(data)
            except (ConnectionError, RuntimeError):
                break
        if not s.ws.closed:
            try:
                await s.ws.close()
            except Exception:
                pass

    async def _release(self, s: Session) -> None:
        s.closed = True
        if s.mode is None or s.slot is None:
            return
        worker = self.workers[s.mode]
        slot = s.slot
        try:
            await worker.close(s)
        except Exception as e:
            log.error("session %d: closing slot %s failed: %s", s.id, slot, e)
        secs = time.monotonic() - s.opened
        log.info("session %d closed: %s slot %s, %s after %.1f s, %d frames; %d/%d %s sessions live",
                 s.id, s.mode, slot, s.close_reason, secs, s.frames_out, worker.live,
                 worker.engine.max_sessions, s.mode)

    async def _on_message(self, s: Session, data: bytes) -> None:
        try:
            msg = P.parse(data)
            P.check_client_message(msg, s.mode)
        except P.ProtocolError as e:
            s.error(str(e), e.fatal)
            return
        if msg.kind == P.HANDSHAKE:
            await self._handshake(s, msg.data)
            return
        worker = self.workers[s.mode]
        if msg.kind == P.AUDIO:
            if s.ending:
                s.error("audio after 'end' is ignored")
                return
            if s.last_seq is not None and msg.number != (s.last_seq + 1) % 2**32:
                s.error(f"audio message {msg.number} after {s.last_seq}: messages lost or out of order "
                        "(the audio is used as it comes)")
            s.last_seq = msg.number
            worker.push_audio(s, msg.number, msg.pcm)
        elif msg.kind == P.TEXT:
            if s.ending:
                s.error("text after 'end' is ignored")
                return
            try:
                await worker.say(s, msg.data["text"])
            except TokenLMError as e:
                s.error(str(e))
        elif msg.kind == P.CONTROL:
            action = msg.data["action"]
            if action == "ping":
                s.send(P.pack_control({**{k: v for k, v in msg.data.items() if k != "action"}, "event": "pong"}))
            elif action == "end":
                if not s.ending:
                    worker.end(s)
            elif action == "reset":
                await worker.reset(s)
                s.send(P.pack_control({"event": "reset"}))

    async def _handshake(self, s: Session, obj: dict) -> None:
        try:
            mode = P.check_handshake(obj)
        except P.ProtocolError as e:
            s.error(str(e), fatal=True)
            return
        if mode not in self.workers:
            why = self.unavailable.get(mode, "not loaded")
            have = ", ".join(m for m in P.MODES if m in self.workers)
            s.error(f"mode {mode!r} is not available on this server ({why}); available: {have}", fatal=True)
            return
        worker = self.workers[mode]
        if worker.live >= worker.engine.max_sessions:
            s.error(f"server full: all {worker.engine.max_sessions} {mode} sessions are in use", fatal=True)
            log.info("session %d refused: all %d %s sessions are in use", s.id, worker.engine.max_sessions, mode)
            return
        try:
            slot = await worker.open(s)
        except TokenLMError as e:
            full = worker.live >= worker.engine.max_sessions or type(e).__name__ == "SessionsFull"
            msg = f"server full: all {worker.engine.max_sessions} {mode} sessions are in use" if full else str(e)
            s.error(msg, fatal=True)
            return
        e = worker.engine
        s.opened = time.monotonic()
        s.send(P.pack_handshake({
            "protocol": P.PROTOCOL, "version": P.VERSION, "mode": mode, "sample_rate": int(e.sample_rate),
            "frame_rate": float(e.frame_rate), "hop_length": int(e.hop_length), "session": s.id,
            "modes": [m for m in P.MODES if m in self.workers], "max_sessions": int(e.max_sessions),
        }))
        log.info("session %d opened: %s slot %d from %s; %d/%d %s sessions live",
                 s.id, mode, slot, s.peer, worker.live, e.max_sessions, mode)


SERVER_KEY = web.AppKey("server", Server)


def create_app(engines: dict, unavailable: dict[str, str] | None = None, frame_wait: float | None = None
               ) -> web.Application:
    """The aiohttp application (``app[SERVER_KEY]`` is the :class:`Server`)."""
    server = Server(engines, unavailable, frame_wait)
    app = web.Application(client_max_size=2 * P.MAX_MESSAGE_BYTES)
    app[SERVER_KEY] = server
    app.router.add_get("/", server.handle_index)
    app.router.add_get("/ws", server.handle_ws)
    app.router.add_get("/api/info", server.handle_info)
    app.router.add_static("/static/", STATIC_DIR)
    app.on_startup.append(server.on_startup)
    app.on_shutdown.append(server.on_shutdown)
    app.on_cleanup.append(server.on_cleanup)
    return app


def load_engines(models: dict[str, str | None], max_sessions: int = 8, device: str = "cpu",
                 warmup: bool = True, quantize: str | None = None,
                 compile: bool = False, asr_beam: int = 0,
                 asr_max_seconds: float | None = None) -> tuple[dict, dict[str, str]]:
    """Engines for each mode in ``models`` (mode -> model, None for the bundled default, "none" to
    switch the mode off). A bundled default that is missing makes that mode unavailable; a model the
    user named that fails to load is an error. ``quantize="int8"``: int8 LM weights; ``compile``: the LM
    steps through torch.compile (for GPUs; the warm-up step pays for the compilation); ``asr_beam``:
    the ASR's beam width (0: greedy; see :class:`~tokenlm.lm.realtime.ASREngine`); ``asr_max_seconds``:
    its sessions' ``max_seconds`` (fresh LM contexts at pauses; 0: one context; None: the default)."""
    from tokenlm.lm.realtime import load_engine

    if asr_max_seconds is not None and not asr_max_seconds >= 0:
        raise TokenLMError(f"--asr-max-seconds must be >= 0, got {asr_max_seconds}")

    engines, unavailable = {}, {}
    for mode in P.MODES:
        if mode not in models:
            continue
        model = models[mode]
        if model is not None and str(model).lower() == "none":
            unavailable[mode] = "switched off"
            continue
        try:
            extra = {"beam": asr_beam} if mode == "asr" and asr_beam else {}
            engine = load_engine(mode, lm=model, max_sessions=max_sessions, device=device, quantize=quantize,
                                 compile=compile, **extra)
        except TokenLMError as e:
            if model is not None:
                raise TokenLMError(f"--{mode} {model}: {e}") from None
            unavailable[mode] = " ".join(str(e).split())
            continue
        if mode == "asr" and asr_max_seconds is not None:
            engine.max_seconds = asr_max_seconds if asr_max_seconds > 0 else float("inf")
        if warmup:
            _warm_up(engine)
        engines[mode] = engine
    return engines, unavailable


def _warm_up(engine) -> None:
    """One step through a throwaway session, so that the first client does not pay for lazy setup."""
    import torch

    with torch.inference_mode():
        slot = engine.open()
        try:
            if engine.mode == "tts":
                engine.say(slot, "hello")
                engine.step({slot: None})
            else:
                engine.step({slot: torch.zeros(int(engine.hop_length))})
        finally:
            engine.close(slot)


async def _serve(engines: dict, unavailable: dict[str, str], host: str, port: int, ready=None) -> None:
    app = create_app(engines, unavailable)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise _listen_error(host, port, e) from None
    addr = runner.addresses[0]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{addr[1]}/"
    modes = ", ".join(f"{m} (max {e.max_sessions} sessions)" for m, e in engines.items())
    print(f"tokenlm serve: listening on {url} (open it in a browser; Ctrl-C to stop)", flush=True)
    print(f"tokenlm serve: modes: {modes}"
          + "".join(f"; {m}: unavailable ({why})" for m, why in unavailable.items()), flush=True)
    if ready is not None:
        ready(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass
    try:
        await stop.wait()
    finally:
        print("tokenlm serve: stopping", flush=True)
        await runner.cleanup()


def run_server(engines: dict, unavailable: dict[str, str] | None = None, host: str = "127.0.0.1",
               port: int = 8998, ready=None) -> None:
    """Serve until SIGINT/SIGTERM. ``ready(url)`` is called once listening."""
    asyncio.run(_serve(engines, dict(unavailable or {}), host, port, ready))


def _listen_error(host: str, port: int, e: OSError) -> TokenLMError:
    why = os.strerror(e.errno).lower() if e.errno else str(e)
    return TokenLMError(f"cannot listen on {host}:{port}: {why}"
                        + (" (is another server running? pass --port)" if e.errno == errno.EADDRINUSE else ""))


def _check_port(host: str, port: int) -> None:
    if port == 0:
        return
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
            s.bind(addr)
    except socket.gaierror as e:
        raise TokenLMError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    except OSError as e:
        raise _listen_error(host, port, e) from None


def serve_command(args) -> int:
    """``tokenlm serve``: load the engines, log one line per session on stderr, serve until Ctrl-C."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if not 0 <= args.port < 65536:
        raise TokenLMError(f"--port must be 0..65535, got {args.port}")
    if not any(getattr(args, m) is None or str(getattr(args, m)).lower() != "none" for m in P.MODES):
        raise TokenLMError("every mode is switched off: leave at least one of --asr, --duplex, --tts on")
    _check_port(args.host, args.port)  # before the models load: a busy port fails at once
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("tokenlm serve: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        engines, unavailable = load_engines({m: getattr(args, m) for m in P.MODES}, args.max_sessions, args.device,
                                            quantize="int8" if getattr(args, "int8", False) else None,
                                            compile=getattr(args, "compile", False),
                                            asr_beam=getattr(args, "asr_beam", 0),
                                            asr_max_seconds=getattr(args, "asr_max_seconds", None))
        run_server(engines, unavailable, args.host, args.port)
    finally:
        log.removeHandler(handler)
    return 0
