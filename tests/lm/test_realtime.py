"""Frame-level engines: batched sessions that step independently give what one session alone gives."""

import warnings

import pytest
import torch

from tokenlm.errors import TokenLMError
from tokenlm.lm.generate import Sampling
from tokenlm.lm.realtime import SessionsFull, load_engine, toy_lm
from tokenlm.lm.tasks import TTS_TAIL_SECONDS

warnings.simplefilter("ignore")


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy-lms")
    return {m: toy_lm(m, root / m) for m in ("asr", "tts", "duplex")}


def _speech(frames, hop=640, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(frames * hop) / 16000
    return (0.1 * torch.sin(2 * torch.pi * 220 * t * (1 + 0.3 * torch.sin(3 * t)))
            + 0.01 * torch.randn(frames * hop, generator=g))


def _frames(x, hop=640):
    return [x[i * hop:(i + 1) * hop] for i in range(x.numel() // hop)]


def _run_alone(engine, frames):
    slot = engine.open()
    outs = [engine.step({slot: f})[slot] for f in frames]
    engine.close(slot)
    return outs


@pytest.mark.parametrize("mode", ["asr", "duplex"])
def test_sessions_stepping_at_different_times_match_a_lone_session(toys, mode):
    a_in, b_in = _frames(_speech(24, seed=1)), _frames(_speech(24, seed=2))
    greedy = Sampling()  # sampled tokens would depend on the batch (one random generator)
    ref_a = _run_alone(load_engine(mode, toys[mode], max_sessions=1, sampling=greedy), a_in)
    ref_b = _run_alone(load_engine(mode, toys[mode], max_sessions=1, sampling=greedy), b_in)
    eng = load_engine(mode, toys[mode], max_sessions=3, sampling=greedy)
    filler = eng.open()  # a third session that comes and goes
    a, b = eng.open(), eng.open()
    outs = {a: [], b: []}
    i = 0
    while len(outs[a]) < len(a_in) or len(outs[b]) < len(b_in):
        inputs = {}
        if len(outs[a]) < len(a_in):
            inputs[a] = a_in[len(outs[a])]
        if i % 3 and len(outs[b]) < len(b_in):  # b skips every third step
            inputs[b] = b_in[len(outs[b])]
        if i == 5:
            eng.close(filler)
        if i == 9:
            filler = eng.open()
        if filler in eng.live:
            inputs[filler] = _speech(1, seed=i)
        res = eng.step(inputs)
        for s in (a, b):
            if s in res:
                outs[s].append(res[s])
        i += 1
    for got, ref in ((outs[a], ref_a), (outs[b], ref_b)):
        assert [o.frame for o in got] == list(range(len(ref)))
        assert [[w.word for w in o.words] for o in got] == [[w.word for w in o.words] for o in ref]
        if mode == "duplex":
            for o, r in zip(got, ref):
                assert o.audio.shape == (640,) and torch.isfinite(o.audio).all()
                torch.testing.assert_close(o.audio, r.audio, atol=1e-5, rtol=0)


def test_duplex_audio_starts_after_its_delay_and_tts_finishes(toys):
    eng = load_engine("duplex", toys["duplex"], max_sessions=1)
    s = eng.open()
    outs = [eng.step({s: f})[s] for f in _frames(_speech(6))]
    assert all(o.audio.abs().max() == 0 for o in outs[: eng.lag]) and eng.lag == 3
    tts = load_engine("tts", toys["tts"], max_sessions=2, seed=0)
    s = tts.open()
    with pytest.raises(TokenLMError, match="nothing to say"):
        tts.say(s, "?!")
    tts.say(s, "hello there")
    done = [tts.step({s: None})[s].done for _ in range(120)]
    assert any(done), "a session with two words to say never finished"
    # the speech goes on for the tail after the end mark, as Speaker's does
    assert done.index(True) == tts.end_at[s] + tts.lag + tts.tail
    assert tts.tail == round(TTS_TAIL_SECONDS * tts.frame_rate) > 0


def test_tts_engine_speaks_a_long_text_as_utterances_each_from_a_fresh_context(toys):
    tts = load_engine("tts", toys["tts"], max_sessions=2, seed=0)
    tts.max_words = 3  # "one two three." and "four five six." are two utterances
    s = tts.open()
    starts = []
    begin = tts._next_utterance
    tts._next_utterance = lambda slot: (begin(slot), starts.append(tts.u[slot]))
    tts.say(s, "one two three. four five six.")
    outs = []
    for _ in range(400):
        outs.append(tts.step({s: None})[s])
        if outs[-1].done:
            break
    assert outs[-1].done, "the session never finished its two utterances"
    assert [o.frame for o in outs] == list(range(len(outs)))  # frames keep counting across utterances
    assert len(starts) == 2 and starts[0] == 0 < starts[1] < len(outs)
    assert sum(o.done for o in outs) == 1  # done once, after the second utterance
    row = tts._lm_rows([s])[0]  # the LM context began again with the second utterance
    assert int(tts.streamer.pos[row]) == len(outs) - starts[1]
    # silence while the second utterance's delayed codebooks start, as at a session's start
    assert all(o.audio.abs().max() == 0 for o in outs[starts[1]: starts[1] + tts.lag])


def test_full_engine_refuses_and_wrong_inputs_are_clear(toys):
    eng = load_engine("asr", toys["asr"], max_sessions=2)
    a, b = eng.open(), eng.open()
    with pytest.raises(SessionsFull, match="all 2 asr sessions are in use"):
        eng.open()
    eng.close(a)
    assert eng.open() == a
    with pytest.raises(TokenLMError, match="640 samples"):
        eng.step({a: torch.zeros(100)})
    eng.close(b)
    with pytest.raises(TokenLMError, match="not open"):
        eng.step({b: torch.zeros(640)})
    with pytest.raises(TokenLMError, match="not for 'duplex'"):
        load_engine("duplex", toys["asr"])
    with pytest.raises(TokenLMError, match="unknown mode"):
        load_engine("karaoke")
