"""Transcriber.transcribe on recordings without speech."""

import soundfile as sf
import torch

from tokenlm.lm.tasks import SILENCE_PEAK, Transcriber


def test_digital_silence_has_no_words_however_short(tmp_path, capsys):
    from tokenlm.cli import main as cli

    beam, greedy = Transcriber("asr"), Transcriber("asr", beam=0)
    assert beam.beam is not None and greedy.beam is None
    for n in (10, 160, 640, 1600, 16000):
        for tr in (beam, greedy):
            assert tr.transcribe(torch.zeros(1, n), 16000) == []
            assert tr.transcribe(torch.full((1, n), SILENCE_PEAK / 2), 16000) == []
    sf.write(tmp_path / "tiny.wav", torch.zeros(10).numpy(), 16000, subtype="PCM_16")
    assert cli(["transcribe", str(tmp_path / "tiny.wav")]) == 0
    assert capsys.readouterr().out.strip() == ""
    # anything above the threshold goes to the model: a tone is not silence
    t = torch.arange(16000) / 16000
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * t)[None]
    assert greedy.transcribe(tone, 16000) == greedy.transcribe_codes([greedy.encode(tone)])[0]


def test_pauses_cut_a_long_recording_into_pieces_that_fit():
    from tokenlm.lm.tasks import split_at_pauses

    sr = 1000
    g = torch.Generator().manual_seed(0)
    wav = 0.3 * torch.randn(1, 25 * sr, generator=g)
    gaps = [(6.0, 6.4), (13.0, 13.3), (19.5, 19.9)]  # pauses between "words"
    for a, b in gaps:
        wav[:, int(a * sr): int(b * sr)] *= 0.001
    spans = split_at_pauses(wav, sr, max_seconds=10, min_seconds=3)
    assert spans[0][0] == 0 and spans[-1][1] == wav.shape[-1]
    assert all(s[1] == t[0] for s, t in zip(spans, spans[1:]))  # contiguous, nothing lost
    assert all(b - a <= 10 * sr for a, b in spans) and spans[-1][1] - spans[-1][0] >= 3 * sr
    for _, cut in spans[:-1]:  # every cut falls in a pause
        assert any(a * sr <= cut <= b * sr for a, b in gaps), cut
    assert split_at_pauses(wav[:, : 10 * sr], sr, max_seconds=10) == [(0, 10 * sr)]


def test_a_long_recording_is_transcribed_piece_by_piece_with_its_times():
    wav, sr = sf.read("examples/data/sample.wav", dtype="float32")
    wav = torch.as_tensor(wav).reshape(1, -1)
    long = torch.cat([wav, wav, wav], dim=-1)
    tr = Transcriber("asr", beam=0)
    tr.max_seconds = wav.shape[-1] / sr + 0.5  # pieces of about one copy each
    from tokenlm.lm.tasks import split_at_pauses

    spans = split_at_pauses(tr._load(long, sr), tr.codec.sample_rate, tr.max_seconds)
    assert len(spans) >= 3
    expect = []
    for a, b in spans:  # each piece alone, its words shifted by where it starts
        piece = tr._load(long, sr)[:, a:b]
        expect += [(w.word, round(w.start + a / tr.codec.sample_rate, 3)) for w in tr.transcribe(piece)]
    got = tr.transcribe(long, sr)
    assert [(w.word, round(w.start, 3)) for w in got] == expect and len(got) > 0
    assert all(x.start <= y.start for x, y in zip(got, got[1:]))
