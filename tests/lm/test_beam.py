"""Beam search with a lexicon and a word language model (tokenlm.lm.beam), on the bundled phone ASR."""

import math
import warnings
from pathlib import Path

import pytest
import torch

from tokenlm.errors import TokenLMError
from tokenlm.lm.beam import BeamSearch, BeamSettings, beam_transcribe, lexicon_for
from tokenlm.lm.checkpoint import load_lm
from tokenlm.lm.tasks import Transcriber, greedy_transcribe
from tokenlm.lm.wordlm import NGramLM

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "sample.wav"


@pytest.fixture(scope="module")
def asr():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bundled ASR is an interim model
        tr = Transcriber("asr")
    from tokenlm.audio import load_audio

    wav, _ = load_audio(SAMPLE, tr.codec.sample_rate, tr.codec.channels)
    return tr, wav, tr.encode(wav)


def words(ws):
    return [w.to_dict() for w in ws]


def test_the_bundled_asr_ships_a_language_model_and_searches_by_default(asr):
    tr, _, _ = asr
    assert tr.word_lm is not None and tr.beam == BeamSettings()
    assert load_lm("asr").word_lm_path.name == "words.arpa.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert Transcriber(tr.lm, beam=0).beam is None
        assert Transcriber(tr.lm, word_lm=False).beam is None  # lexicon alone: greedy unless a width is given
        assert Transcriber(tr.lm, word_lm=False, beam=4).beam.beam == 4
        with pytest.raises(TokenLMError, match="greedy"):
            Transcriber(tr.lm, beam=4, constrain=True)
        with pytest.raises(TokenLMError, match=">= 0"):
            Transcriber(tr.lm, beam=-1)


def test_a_one_wide_beam_without_costs_is_greedy_decoding(asr):
    tr, _, codes = asr
    greedy = greedy_transcribe(tr.model, tr.tokenizer, [codes], tr.frame_rate)[0]
    one = BeamSettings(beam=1, word_bonus=0.0, edit_penalty=0.0, oov_penalty=0.0)
    beam = beam_transcribe(tr.model, tr.tokenizer, [codes], tr.frame_rate, None, one)[0]
    assert len(greedy) >= 3 and words(beam) == words(greedy)


def test_streaming_beam_session_writes_the_offline_words(asr):
    tr, wav, codes = asr
    settings = BeamSettings(beam=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t4 = Transcriber(tr.lm, codec=tr.codec, beam=settings, word_lm=tr.word_lm)
    offline = t4.transcribe_codes([codes])[0]
    # batched with another (shorter) item: the same words
    assert words(t4.transcribe_codes([codes[:, :40], codes])[1]) == words(offline)
    t4.max_seconds = float("inf")  # one LM context throughout, as offline for a file this short
    session, streamed, seen_early = t4.session(beam=True), [], False
    for i in range(0, wav.shape[1], 1280):
        got = session.push(wav[:, i: i + 1280])
        seen_early |= bool(got)
        streamed += got
    streamed += session.finish()
    assert len(offline) >= 3 and words(streamed) == words(offline)
    assert seen_early  # words come out while the audio is still arriving, not only at the end
    assert all(w.word in tr.tokenizer.lexicon for w in offline)


def test_realtime_engine_beam_sessions_write_the_offline_words_whenever_they_step(asr, tmp_path):
    """The server's ASR engine with a beam: two sessions that start and step at different times
    (each idle while the other steps) both write the offline search's words."""
    from tokenlm.lm.realtime import load_engine, toy_lm

    tr, wav, codes = asr
    settings = BeamSettings(beam=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        offline = Transcriber(tr.lm, codec=tr.codec, beam=settings, word_lm=tr.word_lm).transcribe_codes([codes])[0]
        eng = load_engine("asr", tr.lm, max_sessions=3, beam=settings, word_lm=tr.word_lm)
    assert eng.streamer.batch_size == 12 and eng.width == 4
    eng.max_seconds = float("inf")  # one LM context throughout, as offline for a file this short
    hop = eng.hop_length
    x = torch.nn.functional.pad(wav[0], (0, -wav.shape[1] % hop))  # the offline encoder pads the last frame
    frames = list(x.split(hop))
    assert codes.shape[1] == len(frames)
    a = eng.open()
    got = {"a": [], "b": []}
    todo_a = list(frames)
    for _ in range(25):  # a alone for a while
        got["a"] += eng.step({a: todo_a.pop(0)})[a].words
    b = eng.open()
    for i, f in enumerate(frames):  # b at every step, a at every other one
        inputs = {b: f}
        if i % 2 and todo_a:
            inputs[a] = todo_a.pop(0)
        out = eng.step(inputs)
        got["b"] += out[b].words
        got["a"] += out[a].words if a in out else []
    while todo_a:
        got["a"] += eng.step({a: todo_a.pop(0)})[a].words
    for s, key in ((a, "a"), (b, "b")):
        for _ in range(eng.flush_frames):
            got[key] += eng.step({s: None})[s].words
        got[key] += eng.finish(s)
    assert len(offline) >= 3
    assert words(got["a"]) == words(offline) and words(got["b"]) == words(offline)
    # a reopened slot starts a fresh search
    eng.close(a)
    c = eng.open()
    assert c == a and eng.searches[c].frames == 0 and eng.emitted[c] == 0
    with pytest.raises(TokenLMError, match=">= 0"):
        load_engine("asr", tr.lm, beam=-1)
    with pytest.raises(TokenLMError, match="sentencepiece"):
        load_engine("asr", toy_lm("asr", tmp_path / "toy"), beam=4)


def frame(tok, card, v=-0.1):
    """Top tokens of a frame: ``tok`` first, then everything else far behind."""
    return [v] + [-20.0] * (card + 1), [tok] + [t for t in range(card + 2) if t != tok]


def test_the_language_model_chooses_among_homophones_and_near_words(asr):
    tr, _, _ = asr
    tok = tr.tokenizer
    card, pad, epad = tok.vocab_size, tok.vocab_size, tok.vocab_size + 1
    ph = [tok.ids[p] for p in tok.lexicon["their"].split()]
    assert tok.lexicon["there"] == tok.lexicon["their"]

    def decode(lm, run):
        bs = BeamSearch(lexicon_for(tok, lm), BeamSettings(beam=4), card, pad, epad)
        for t in [epad] + [tok.ids[p] for p in tok.lexicon["over"].split()] + [epad] + run + [pad, epad]:
            v, i = frame(t, card)
            bs.advance([v] * len(bs.hyps), [i] * len(bs.hyps))
        return [w.word for w in bs.words(None, 25.0, final=True)]

    over_there = NGramLM.train(["we went over there", "look over there now", "their dog"] * 5)
    over_their = NGramLM.train(["we went over their heads", "look over their house", "there it is"] * 5)
    assert decode(over_there, ph) == ["over", "there"]
    assert decode(over_their, ph) == ["over", "their"]
    # a phone off: the word one edit away that the language model expects
    near = ph[:-1] + [tok.ids["l"]]
    assert tok.lexicon["there"].split()[-1] != "l"
    assert decode(over_there, near)[-1] == "there"


def test_the_search_follows_the_scores_not_the_first_choice(asr):
    # frame by frame the likeliest phones spell nothing; the second choices spell a word: the beam finds it
    tr, _, _ = asr
    tok = tr.tokenizer
    card, pad, epad = tok.vocab_size, tok.vocab_size, tok.vocab_size + 1
    lm = NGramLM.train(["the cat sat", "a cat ran", "the dog sat"] * 5)
    target = [tok.ids[p] for p in tok.lexicon["cat"].split()]
    noise = tok.ids["zh"]
    bs = BeamSearch(lexicon_for(tok, lm), BeamSettings(beam=8), card, pad, epad)
    frames = [([-0.05] + [-20.0] * (card + 1), [epad] + [t for t in range(card + 2) if t != epad])]
    for t in target:
        frames.append(([math.log(0.55), math.log(0.45)] + [-20.0] * card,
                       [noise, t] + [x for x in range(card + 2) if x not in (noise, t)]))
    frames.append(frame(epad, card))
    for v, i in frames:
        bs.advance([v] * len(bs.hyps), [i] * len(bs.hyps))
    assert [w.word for w in bs.words(None, 25.0, final=True)] == ["cat"]
    assert torch.tensor(bs.tokens()).shape == (8,)


def test_cli_decoding_options(tmp_path, capsys):
    from tokenlm.cli import main as cli

    assert cli(["transcribe", str(SAMPLE), "--beam", "0", "--json"]) == 0
    greedy = capsys.readouterr().out
    assert cli(["transcribe", str(SAMPLE), "--beam", "2", "--lm", "none", "--json"]) == 0
    assert '"words"' in greedy and '"words"' in capsys.readouterr().out
    (tmp_path / "cut.arpa").write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\tthe\n")
    for args, why in [(["--lm", str(tmp_path / "cut.arpa")], "truncated"),
                      (["--lm", str(tmp_path / "none.arpa")], "cannot read language model")]:
        assert cli(["transcribe", str(SAMPLE), *args]) == 1
        err = capsys.readouterr().err.strip()
        assert why in err and len(err.splitlines()) == 1 and "Traceback" not in err
    for cmd in (["transcribe", str(SAMPLE), "--beam"], ["serve", "--asr-beam"]):
        assert cli([*cmd, "-1"]) == 2
        assert "expected a whole number >= 0, got -1" in capsys.readouterr().err
