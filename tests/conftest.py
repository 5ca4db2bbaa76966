import warnings

import pytest
import torch

import tokenlm.codecs as tc


@pytest.fixture(scope="session")
def tiny_codec():
    """The 'tiny' preset with deterministic random weights: same frame geometry as the default."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tc.UntrainedCodecWarning)
        return tc.load("tiny")


@pytest.fixture
def speechlike():
    """A deterministic 1 s, 16 kHz test signal: gliding harmonics plus a little noise, [1, 1, T]."""
    g = torch.Generator().manual_seed(1234)
    t = torch.arange(16000) / 16000
    f0 = 120 + 60 * torch.sin(2 * torch.pi * 1.5 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / 16000
    wav = sum(torch.sin(k * phase) / k for k in range(1, 8)) * 0.2
    wav = wav * (0.5 + 0.5 * torch.sin(2 * torch.pi * 3 * t).abs()) + 0.01 * torch.randn(16000, generator=g)
    return wav.view(1, 1, -1).float()
