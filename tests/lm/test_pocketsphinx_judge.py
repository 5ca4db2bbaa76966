"""The pocketsphinx judge hears each file afresh: its transcript does not depend on earlier files."""

from pathlib import Path

import pytest
import torch

pytest.importorskip("pocketsphinx")

from tokenlm.audio import load_audio  # noqa: E402
from tokenlm.lm.evaluation import Pocketsphinx  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "sample.wav"


def test_transcript_does_not_depend_on_what_came_before():
    wav, sr = load_audio(SAMPLE, sample_rate=16000)
    speech = wav.mean(0)
    first = Pocketsphinx().transcribe(speech)
    assert first  # the bundled sample is speech
    ps = Pocketsphinx()
    g = torch.Generator().manual_seed(0)
    ps.transcribe(0.3 * torch.randn(32000, generator=g))  # loud noise shifts the live mean normalisation
    ps.transcribe(0.05 * speech)  # and so does quiet speech
    assert ps.transcribe(speech) == first
