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
