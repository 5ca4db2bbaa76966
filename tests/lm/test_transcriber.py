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


def _powers(frames, quiet, level=1e-2, seed=0):
    """Per-frame powers of "speech" (random around ``level``) with ``quiet`` frames near silence."""
    g = torch.Generator().manual_seed(seed)
    p = (level * (0.5 + torch.rand(frames, generator=g))).tolist()
    for i in quiet:
        p[i] = 1e-7
    return p


def test_pause_cutter_cuts_in_pauses_once_a_piece_is_long_enough():
    from tokenlm.lm.tasks import PauseCutter

    fr, look = 25.0, 14
    # pauses at frames 40-45 (too early: under 3 s into the piece), 120-127 and 250-256
    quiet = [*range(40, 46), *range(120, 128), *range(250, 257)]
    power = _powers(400, quiet)
    cutter = PauseCutter(fr, look, min_seconds=3.0, max_seconds=10.0)
    cuts = {}
    for s, p in enumerate(power):
        r = cutter.push(p)
        if r is not None:
            cuts[s] = r
    assert list(cuts.values()) == [r for r in cuts.values() if r in quiet] and len(cuts) == 2
    assert all(s - r == look for s, r in cuts.items())  # answered lookahead frames late
    r1, r2 = cuts.values()
    assert 120 <= r1 <= 127 and 250 <= r2 <= 256
    # one context throughout when max_seconds is inf
    never = PauseCutter(fr, look, max_seconds=float("inf"))
    assert all(never.push(p) is None for p in power)
    # no cut before a frame without audio (a session's closing flush)
    c = PauseCutter(fr, look)
    got = [c.push(p, audio=i < 118) for i, p in enumerate(power[:200])]
    assert all(r is None for r in got)
    # speech that only dips -13 dB: not a pause for a short piece, a place to cut past max_seconds
    dips = _powers(600, [])
    for i in range(100, 600, 60):
        dips[i - 1: i + 2] = [5e-4] * 3
    c = PauseCutter(fr, look, min_seconds=3.0, max_seconds=10.0)
    cuts = [r for r in (c.push(p) for p in dips) if r is not None]
    assert cuts and all(r >= 250 for r in cuts[:1]) and all(b - a >= 250 for a, b in zip(cuts, cuts[1:]))
    assert all(any(abs(r - i) <= 1 for i in range(100, 600, 60)) for r in cuts)


def _session_words(tr, wav, chunk=3200):
    session = tr.session()
    words = []
    for i in range(0, wav.shape[-1], chunk):
        words += session.push(wav[:, i: i + chunk])
    return words + session.finish(), session


def test_a_streaming_session_starts_fresh_contexts_at_pauses():
    from tokenlm.lm.realtime import load_engine

    wav, sr = sf.read("examples/data/sample.wav", dtype="float32")
    wav = torch.as_tensor(wav).reshape(1, -1)
    gap = torch.zeros(1, sr // 2)
    long = torch.cat([wav, gap, wav, gap, wav], dim=-1)  # 24 s, half-second pauses between the copies
    long = torch.nn.functional.pad(long, (0, -long.shape[-1] % 640))  # whole frames, for the engine
    tr = Transcriber("asr", beam=0)
    words, session = _session_words(tr, long)
    assert len(session.cuts) >= 2
    power = long[0, : long.shape[-1] // 640 * 640].reshape(-1, 640).pow(2).mean(1)
    for r in session.cuts:  # each at a quiet frame, at least 3 s after the last
        assert power[r] <= 0.01 * power.max()
    assert all(b - a >= 75 for a, b in zip([0] + session.cuts, session.cuts))
    # the live engine (the server's) restarts its sessions alike and writes the same words
    eng = load_engine("asr", "asr", max_sessions=2)
    other, slot = eng.open(), eng.open()
    frames = list(long[0].split(640))
    got = []
    for i, f in enumerate(frames):
        got += eng.step({slot: f} | ({other: frames[-1 - i]} if i % 2 else {}))[slot].words
    got += eng.flush(slot)
    assert eng.cuts[slot] == session.cuts and len(eng.cuts[other]) >= 1
    assert [(w.word, w.start) for w in got] == [(w.word, w.start) for w in words]
    # one context throughout (max_seconds inf): the same words up to the first cut
    tr.max_seconds = float("inf")
    one, alone = _session_words(tr, long)
    assert alone.cuts == []
    first = session.cuts[0] / tr.frame_rate
    before = [w.word for w in words if w.start < first][:-1]
    assert before and before == [w.word for w in one if w.start < first][: len(before)]
    assert all(x.start <= y.start for x, y in zip(words, words[1:]))
    # later copies are still read after the restarts: each copy gets words, and in all about as many
    # as one context writes (this out-of-domain sample reads differently from one context to another)
    span = (wav.shape[-1] + gap.shape[-1]) / sr
    per_copy = [sum(k * span <= w.start < (k + 1) * span for w in words) for k in range(3)]
    assert min(per_copy) >= 0.5 * per_copy[0] > 0, per_copy
    assert len(words) >= 0.7 * len(one)


def test_a_streaming_beam_search_restarts_alike_in_a_session_and_the_engine():
    from tokenlm.lm.beam import BeamSettings
    from tokenlm.lm.realtime import load_engine

    wav, sr = sf.read("examples/data/sample.wav", dtype="float32")
    wav = torch.as_tensor(wav).reshape(1, -1)
    long = torch.cat([wav, torch.zeros(1, sr // 2), wav], dim=-1)
    long = torch.nn.functional.pad(long, (0, -long.shape[-1] % 640))
    tr = Transcriber("asr", beam=BeamSettings(beam=3))
    session = tr.session(beam=True)
    words = session.push(long) + session.finish()
    assert session.cuts and words
    eng = load_engine("asr", tr.lm, max_sessions=1, beam=BeamSettings(beam=3))
    slot = eng.open()
    got = [w for f in long[0].split(640) for w in eng.step({slot: f})[slot].words] + eng.flush(slot)
    assert eng.cuts[slot] == session.cuts
    assert [(w.word, w.start) for w in got] == [(w.word, w.start) for w in words]


def test_cli_max_seconds_sets_the_pieces_and_the_streaming_contexts(tmp_path, capsys):
    import json

    from tokenlm.cli import main as cli

    wav, sr = sf.read("examples/data/sample.wav", dtype="float32")
    wav = torch.as_tensor(wav).reshape(1, -1)
    long = torch.cat([wav, torch.zeros(1, sr // 2), wav], dim=-1)  # 15.6 s
    path = tmp_path / "long.wav"
    sf.write(path, long[0].numpy(), sr, subtype="FLOAT")
    tr = Transcriber("asr", beam=0)
    tr.max_seconds = 8.0
    want = [w.to_dict() for w in tr.transcribe(long, sr)]
    assert cli(["transcribe", str(path), "--beam", "0", "--json", "--max-seconds", "8"]) == 0
    assert json.loads(capsys.readouterr().out)["words"] == want
    tr.max_seconds = float("inf")  # --stream --max-seconds 0: one LM context throughout
    session = tr.session()
    want = [w.to_dict() for w in session.push(long) + session.finish()]
    assert session.cuts == []
    assert cli(["transcribe", str(path), "--stream", "--json", "--max-seconds", "0"]) == 0
    assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == want
    assert cli(["transcribe", str(path), "--max-seconds", "-1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--max-seconds must be >= 0" in err
