"""The server on the real engines (tokenlm.lm.realtime): the bundled models, or tiny random ones
for modes with no bundled model yet."""

import asyncio

import numpy as np
import pytest
import torch

from tokenlm.audio import load_audio
from tokenlm.server import protocol as P
from tokenlm.server.client import Client

from .conftest import SAMPLE
from .helpers import acks, collect, errors, is_event, run, running

pytestmark = pytest.mark.timeout(120)


def sample_pcm() -> np.ndarray:
    wav, _ = load_audio(SAMPLE, 16000, 1)
    return P.to_int16(wav[0].numpy())


def _asr_through_server(engine, offline_words):
    """Stream the sample through the server; the words must be the offline ones, in order."""
    pcm = sample_pcm()
    offline = [w.to_dict() for w in offline_words(torch.from_numpy(P.to_float32(pcm))[None])]
    hop = engine.hop_length

    async def main():
        async with running({"asr": engine}) as srv, Client.connect(srv.ws_url, "asr") as c:
            for i in range(0, len(pcm), hop):
                await c.send_audio(pcm[i: i + hop])
            await c.end()
            return await collect(c, timeout=60)

    msgs = run(main(), timeout=100)
    assert not errors(msgs)
    n = -(-len(pcm) // hop)
    assert [(a["frame"], a["seq"]) for a in acks(msgs)] == [(i, i) for i in range(n)]
    words = [w for m in msgs if m.kind == P.TEXT for w in m.data["words"]]
    assert words and [w["word"] for w in words] == [w["word"] for w in offline]
    for got, want in zip(words, offline):
        assert got["start"] == pytest.approx(want["start"], abs=0.05)
    assert msgs[-1].data == {"event": "done", "frames": n}
    assert engine.live == []


def test_asr_stream_matches_offline(real_engines):
    """Streaming through the server gives exactly the words the same model gives offline."""
    from tokenlm.lm.tasks import Transcriber

    engine, _ = real_engines["asr"]
    engine.max_seconds = float("inf")  # one LM context throughout, as offline for a file this short
    try:
        _asr_through_server(engine, lambda wav: Transcriber(engine.lm, beam=0).transcribe(wav, 16000))
    finally:
        del engine.max_seconds  # the class default: fresh contexts at pauses
    # by default the engine's sessions start fresh LM contexts at pauses, as a streaming session does

    def session_words(wav):
        session = Transcriber(engine.lm, beam=0).session()
        return session.push(wav) + session.finish()

    _asr_through_server(engine, session_words)


def test_asr_beam_stream_matches_offline_beam(real_engines):
    """`tokenlm serve --asr-beam N`: the live words are the offline beam search's."""
    from tokenlm.lm.tasks import Transcriber
    from tokenlm.server.app import load_engines

    engine, kind = real_engines["asr"]
    if kind != "bundled" or not getattr(engine.tokenizer, "lexicon", None):
        pytest.skip("needs the bundled phone ASR")
    engines, _ = load_engines({"asr": None}, max_sessions=2, asr_beam=4)
    beam = engines["asr"]
    assert beam.width == 4 and beam.streamer.batch_size == 8
    beam.max_seconds = float("inf")  # one LM context throughout, as offline for a file this short
    _asr_through_server(beam, lambda wav: Transcriber(beam.lm, beam=4).transcribe(wav, 16000))


def test_duplex_audio_per_frame_and_disconnect(real_engines):
    """Two duplex sessions; one drops its connection mid-stream: the other gets every frame."""
    engine, kind = real_engines["duplex"]
    pcm = sample_pcm()
    hop, frames = engine.hop_length, 40

    async def main():
        async with running({"duplex": engine}) as srv, Client.connect(srv.ws_url, "duplex") as a:
            b = await Client.open(srv.ws_url)
            await b.handshake("duplex")
            assert len(engine.live) == 2
            for i in range(frames):
                await a.send_audio(pcm[i * hop: (i + 1) * hop])
                if i < 12:
                    await b.send_audio(pcm[(i + 50) * hop: (i + 51) * hop])
                elif i == 12:
                    b.ws._conn.transport.abort()
                    await b.http.close()
                await asyncio.sleep(0.02)
            msgs = await collect(a, until=lambda m: m.kind == P.CONTROL and m.data.get("frame") == frames - 1,
                                 timeout=30)
            for _ in range(100):
                if engine.live == [a_slot(srv)]:
                    break
                await asyncio.sleep(0.05)
            assert len(engine.live) == 1
            return msgs

    def a_slot(srv):
        (s,) = [s for s in srv.app_server.sessions if s.slot is not None]
        return s.slot

    msgs = run(main(), timeout=100)
    assert not errors(msgs)
    audio = [m for m in msgs if m.kind == P.AUDIO]
    assert [m.number for m in audio] == list(range(frames))
    assert all(m.pcm.shape == (hop,) for m in audio)
    assert [a["frame"] for a in acks(msgs)] == list(range(frames))
    assert np.abs(np.concatenate([m.pcm for m in audio])).max() > 0  # the model's audio is not all silence


def test_tts_speaks(real_engines):
    engine, kind = real_engines["tts"]

    async def main():
        async with running({"tts": engine}) as srv, Client.connect(srv.ws_url, "tts") as c:
            await c.say("hello world")
            msgs = await collect(c, until=is_event("spoken"), timeout=60)
            await c.end()
            msgs += await collect(c, timeout=10)
            return msgs

    msgs = run(main(), timeout=100)
    assert not errors(msgs)
    audio = [m.number for m in msgs if m.kind == P.AUDIO]
    assert audio and audio == list(range(len(audio)))
    assert msgs[-1].data["event"] == "done"


def test_serve_asr_max_seconds_sets_the_engines_contexts():
    """`tokenlm serve --asr-max-seconds S` (0: one context per session; negative: an error)."""
    from tokenlm.errors import TokenLMError
    from tokenlm.lm.realtime import ASREngine
    from tokenlm.server.app import load_engines

    for given, want in ((None, ASREngine.max_seconds), (0, float("inf")), (6.5, 6.5)):
        engines, _ = load_engines({"asr": None}, max_sessions=1, warmup=False, asr_max_seconds=given)
        if "asr" not in engines:
            pytest.skip("needs the bundled ASR")
        assert engines["asr"].max_seconds == want
    with pytest.raises(TokenLMError, match="--asr-max-seconds must be >= 0"):
        load_engines({"asr": None}, max_sessions=1, warmup=False, asr_max_seconds=-1)
