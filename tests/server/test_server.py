"""The server with model-free engines: protocol behaviour, batching, disconnects, a full server,
malformed input. (tests/server/test_real.py runs the real engines.)"""

import asyncio

import aiohttp
import numpy as np
import pytest

from tokenlm.server import protocol as P
from tokenlm.server.client import Client, ServerError

from .fake_engine import FakeEngine, fake_engines
from .helpers import acks, collect, errors, is_event, run, running

HOP = 640


def tone(n_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n_samples) * 3000).astype(np.int16)


def test_handshake_info_and_page():
    async def main():
        async with running(fake_engines(modes=("asr", "duplex")), {"tts": "no tts model is bundled"}) as srv:
            async with Client.connect(srv.ws_url, "asr") as c:
                info = c.info
                assert info["protocol"] == "tokenlm" and info["version"] == 1 and info["mode"] == "asr"
                assert (info["sample_rate"], info["frame_rate"], info["hop_length"]) == (16000, 25.0, 640)
                assert info["modes"] == ["asr", "duplex"] and isinstance(info["session"], int)
            async with aiohttp.ClientSession() as http:
                async with http.get(srv.make_url("/api/info")) as r:
                    data = await r.json()
                assert data["available"] == ["asr", "duplex"]
                assert data["modes"]["tts"] == {"available": False, "reason": "no tts model is bundled"}
                assert data["modes"]["asr"]["max_sessions"] == 4
                async with http.get(srv.make_url("/")) as r:
                    assert r.status == 200 and "<audio" not in (page := await r.text()) and "app.js" in page
                for name in ("app.js", "worklet.js", "style.css"):
                    async with http.get(srv.make_url(f"/static/{name}")) as r:
                        assert r.status == 200, name

    run(main())


def test_asr_session_words_and_acks_in_order():
    async def main():
        async with running(fake_engines(modes=("asr",))) as srv, Client.connect(srv.ws_url, "asr") as c:
            audio = tone(20 * HOP + 100)
            seqs_by_end = []  # which message completes each frame
            pos = 0
            for size in [1000, 300, 2000, 640, 5000] + [1000] * 5:  # pieces that do not line up with frames
                seq = await c.send_audio(audio[pos: pos + size])
                pos += size
                seqs_by_end += [seq] * ((pos // HOP) - len(seqs_by_end))
            await c.send_audio(audio[pos:])
            await c.end()
            msgs = await collect(c)
            assert not errors(msgs)
            a = acks(msgs)
            n = len(audio) // HOP + 1  # the last partial frame is padded by 'end'
            assert [x["frame"] for x in a] == list(range(n))
            assert [x["seq"] for x in a[:20]] == seqs_by_end[:20]
            words = [w["word"] for m in msgs if m.kind == P.TEXT for w in m.data["words"]]
            assert words == ["f3", "f7", "f11", "f15", "f19", "end"]
            assert msgs[-1].kind == P.CONTROL and msgs[-1].data == {"event": "done", "frames": n}
            # the engine saw every frame once, in order, and the slot was freed
            await asyncio.sleep(0.05)
            assert srv.app_server.engines["asr"].live == []

    run(main())


def test_duplex_one_audio_frame_per_input_frame():
    async def main():
        async with running(fake_engines(modes=("duplex",))) as srv, Client.connect(srv.ws_url, "duplex") as c:
            audio = tone(12 * HOP)
            for i in range(12):
                await c.send_audio(audio[i * HOP: (i + 1) * HOP])
            msgs = await collect(c, until=lambda m: m.kind == P.CONTROL and m.data.get("frame") == 11)
            frames = [m for m in msgs if m.kind == P.AUDIO]
            assert [m.number for m in frames] == list(range(12))
            assert all(m.pcm.size == HOP for m in frames)
            echo = np.concatenate([m.pcm for m in frames]).astype(np.int32)
            assert np.abs(echo - audio.astype(np.int32) // 2).max() <= 1  # the fake model echoes at half volume
            assert [x["seq"] for x in acks(msgs)] == list(range(12))

    run(main())


def test_end_waits_for_the_frame_being_stepped():
    """'end' while the session's last frame is in the running step: its outputs still come first."""
    async def main():
        async with running({"duplex": FakeEngine("duplex", step_seconds=0.1)}) as srv, \
                Client.connect(srv.ws_url, "duplex") as c:
            await c.send_audio(tone(HOP))
            await asyncio.sleep(0.03)  # the step has started
            await c.end()
            msgs = await collect(c)
            assert [m.kind for m in msgs] == [P.AUDIO, P.CONTROL, P.CONTROL]
            assert [m.data for m in msgs[1:]] == [{"event": "frame", "frame": 0, "seq": 0},
                                                  {"event": "done", "frames": 1}]

    run(main())


def test_tts_session_speaks_text_at_real_time_pace():
    async def main():
        async with running(fake_engines(modes=("tts",))) as srv, Client.connect(srv.ws_url, "tts") as c:
            t0 = asyncio.get_running_loop().time()
            await c.say("hello there world")
            msgs = await collect(c, until=is_event("spoken"))
            took = asyncio.get_running_loop().time() - t0
            frames = [m.number for m in msgs if m.kind == P.AUDIO]
            assert frames == list(range(len(frames))) and len(frames) == 9  # 3 frames per word
            assert [w["word"] for m in msgs if m.kind == P.TEXT for w in m.data["words"]] == ["hello", "there", "world"]
            assert took > 0.1  # paced: 9 frames = 0.36 s, at most 5 frames ahead of real time
            await c.end()
            rest = await collect(c)
            assert rest[-1].data["event"] == "done"

    run(main())


def test_sessions_are_stepped_together():
    async def main():
        engines = fake_engines(modes=("asr",))
        async with running(engines) as srv, Client.connect(srv.ws_url, "asr") as a, \
                Client.connect(srv.ws_url, "asr") as b:
            for i in range(10):
                await a.send_audio(tone(HOP, i))
                await b.send_audio(tone(HOP, 100 + i))
                await asyncio.sleep(0.01)
            ra = await collect(a, until=lambda m: m.kind == P.CONTROL and m.data.get("frame") == 9)
            rb = await collect(b, until=lambda m: m.kind == P.CONTROL and m.data.get("frame") == 9)
            assert [x["frame"] for x in acks(ra)] == [x["frame"] for x in acks(rb)] == list(range(10))
            sizes = [len(s) for s in engines["asr"].batches]
            assert sum(sizes) == 20 and sizes.count(2) >= 8, sizes

    run(main())


def test_lagging_session_does_not_hold_up_the_others():
    """A session that stops sending: the others step after one frame period, not forever."""
    async def main():
        async with running(fake_engines(modes=("asr",))) as srv, Client.connect(srv.ws_url, "asr") as a, \
                Client.connect(srv.ws_url, "asr") as b:
            await b.send_audio(tone(HOP))
            await collect(b, until=is_event("frame"))
            for i in range(5):
                await a.send_audio(tone(HOP, i))
            msgs = await collect(a, until=lambda m: m.kind == P.CONTROL and m.data.get("frame") == 4, timeout=2)
            assert [x["frame"] for x in acks(msgs)] == list(range(5))

    run(main())


def test_disconnect_mid_stream_frees_the_slot_and_others_go_on():
    async def main():
        engines = fake_engines(max_sessions=2, modes=("duplex",))
        async with running(engines) as srv, Client.connect(srv.ws_url, "duplex") as a:
            got_a = []
            b = await Client.open(srv.ws_url)
            await b.handshake("duplex")
            assert len(engines["duplex"].live) == 2
            for i in range(30):
                await a.send_audio(tone(HOP, i))
                if i < 10:
                    await b.send_audio(tone(HOP, 50 + i))
                if i == 10:  # b vanishes mid-stream, without 'end'
                    b.ws._conn.transport.abort()  # a dropped TCP connection: no close handshake
                    await b.http.close()
                await asyncio.sleep(0.005)
            await a.end()
            got_a = await collect(a)
            assert not errors(got_a)
            assert [x["frame"] for x in acks(got_a)] == list(range(30))
            assert [m.number for m in got_a if m.kind == P.AUDIO] == list(range(30))
            for _ in range(50):
                if not engines["duplex"].live:
                    break
                await asyncio.sleep(0.02)
            assert engines["duplex"].live == []
            # the freed slot can be used again
            async with Client.connect(srv.ws_url, "duplex") as c:
                await c.send_audio(tone(HOP))
                assert (await collect(c, until=is_event("frame")))[-1].data["frame"] == 0

    run(main())


def test_server_full():
    async def main():
        async with running(fake_engines(max_sessions=2, modes=("duplex", "asr"))) as srv:
            async with Client.connect(srv.ws_url, "duplex"), Client.connect(srv.ws_url, "duplex"):
                c = await Client.open(srv.ws_url)
                with pytest.raises(ServerError) as e:
                    await c.handshake("duplex")
                assert str(e.value) == "server full: all 2 duplex sessions are in use" and e.value.fatal
                assert await c.recv(timeout=5) is None  # and the server closed the connection
                await c.close()
                async with Client.connect(srv.ws_url, "asr"):  # other modes have their own slots
                    pass
            async with Client.connect(srv.ws_url, "duplex") as c:  # slots are free again
                await c.send_audio(tone(HOP))
                await collect(c, until=is_event("frame"))

    run(main())


def test_unavailable_mode():
    async def main():
        async with running(fake_engines(modes=("asr",)), {"tts": "no tts model is bundled"}) as srv:
            with pytest.raises(ServerError, match=r"mode 'tts' is not available on this server \(no tts model is "
                                                  r"bundled\); available: asr"):
                async with Client.connect(srv.ws_url, "tts"):
                    pass

    run(main())


MALFORMED = [
    (b"", "empty message"),
    (b"\x09hello", "unknown message kind 0x09"),
    (b"\x03{oops", "not valid JSON"),
    (b"\x01\x00\x00\x00\x00\x01\x02\x03", "odd number of PCM bytes"),
    (b"\x01" + bytes(P.MAX_MESSAGE_BYTES + 2), "message too large"),
    (P.pack_say("hello"), "only accepted in tts mode"),
    (P.pack_control({"action": "dance"}), "action must be one of"),
    (P.pack_handshake({"protocol": "tokenlm", "version": 1, "mode": "asr"}), "handshake already done"),
    (P.pack_error("from the client"), "sent by the server only"),
]


def test_malformed_messages_get_errors_and_the_session_goes_on():
    async def main():
        async with running(fake_engines(modes=("asr",))) as srv:
            c = await Client.open(srv.ws_url)
            await c.send_raw(P.pack_audio(0, tone(HOP)))  # before the handshake
            m = await c.recv(timeout=5)
            assert m.kind == P.ERROR and "before the handshake" in m.data["error"] and not m.data["fatal"]
            await c.ws.send_str("hello")  # a text websocket frame
            m = await c.recv(timeout=5)
            assert m.kind == P.ERROR and "binary messages" in m.data["error"]
            await c.handshake("asr")
            for data, words in MALFORMED:
                await c.send_raw(data)
                m = await c.recv(timeout=5)
                assert m.kind == P.ERROR, words
                assert words in m.data["error"] and m.data["fatal"] is False
            # out-of-order sequence numbers are reported but the audio is used
            await c.send_raw(P.pack_audio(5, tone(HOP)))
            await c.send_raw(P.pack_audio(4, tone(HOP)))
            msgs = await collect(c, until=lambda m: m.kind == P.CONTROL and m.data.get("frame") == 1)
            assert [e["error"] for e in errors(msgs)] == [
                "audio message 4 after 5: messages lost or out of order (the audio is used as it comes)"]
            assert [(a["frame"], a["seq"]) for a in acks(msgs)] == [(0, 5), (1, 4)]
            await c.control("ping", t=12.5)
            m = await c.recv(timeout=5)
            assert m.data == {"t": 12.5, "event": "pong"}
            await c.close()
            # a bad handshake is fatal for that connection only
            c = await Client.open(srv.ws_url)
            await c.send_raw(P.pack_handshake({"protocol": "tokenlm", "version": 99, "mode": "asr"}))
            m = await c.recv(timeout=5)
            assert m.data["fatal"] and "unsupported protocol version 99" in m.data["error"]
            assert await c.recv(timeout=5) is None
            await c.close()
            async with Client.connect(srv.ws_url, "asr") as c:  # the server is fine
                await c.send_audio(tone(HOP))
                await collect(c, until=is_event("frame"))
            assert srv.app_server.engines["asr"].live == [] or len(srv.app_server.engines["asr"].live) <= 1

    run(main())


def test_reset_starts_a_fresh_session():
    async def main():
        async with running(fake_engines(modes=("asr",))) as srv, Client.connect(srv.ws_url, "asr") as c:
            for i in range(3):
                await c.send_audio(tone(HOP, i))
            await collect(c, until=lambda m: m.kind == P.CONTROL and m.data.get("frame") == 2)
            await c.control("reset")
            await collect(c, until=is_event("reset"))
            c.seq = 0
            await c.send_audio(tone(HOP))
            m = await collect(c, until=is_event("frame"))
            assert acks(m) == [{"event": "frame", "frame": 0, "seq": 0}] and not errors(m)

    run(main())


class _Broken(FakeEngine):
    def step(self, inputs):
        raise RuntimeError("boom")


def test_engine_failure_ends_the_session_not_the_server():
    async def main():
        async with running({"asr": _Broken("asr"), "duplex": FakeEngine("duplex")}) as srv:
            async with Client.connect(srv.ws_url, "asr") as c:
                await c.send_audio(tone(HOP))
                m = await c.recv(timeout=5)
                assert m.kind == P.ERROR and m.data["fatal"] and "boom" in m.data["error"]
                assert await c.recv(timeout=5) is None
            async with Client.connect(srv.ws_url, "duplex") as c:
                await c.send_audio(tone(HOP))
                await collect(c, until=is_event("frame"))

    run(main())


def test_client_sending_too_fast_is_stopped():
    async def main():
        async with running({"asr": FakeEngine("asr", step_seconds=0.05)}) as srv, \
                Client.connect(srv.ws_url, "asr") as c:
            big = tone(P.MAX_MESSAGE_BYTES // 2 - 8)  # 32 s of audio at once
            await c.send_audio(big)
            msgs = await collect(c)
            assert errors(msgs)[-1]["fatal"] and "real-time pace" in errors(msgs)[-1]["error"]

    run(main())
