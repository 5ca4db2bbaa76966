"""Reconstruction losses of the codec recipe."""

import math

import torch

from tokenlm.codecs.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss


def harmonic(f0=120.0, seconds=0.5, sr=16000):
    t = torch.arange(int(seconds * sr)) / sr
    return sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 40)).mul(0.05)[None, None]


def test_stft_loss_is_zero_on_identity_and_differentiable():
    loss = MultiResolutionSTFTLoss()
    x = harmonic()
    assert loss(x, x).item() == 0.0
    assert loss(torch.zeros_like(x), torch.zeros_like(x)).item() == 0.0  # digital silence: the floor keeps it finite
    est = (x + 0.01 * torch.randn_like(x)).requires_grad_()
    value = loss(est, x)
    value.backward()
    assert value.item() > 0 and torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_stft_loss_hears_noise_between_harmonics_that_mel_bands_average_away():
    torch.manual_seed(0)
    clean = harmonic()
    noisy = clean + 0.003 * torch.randn_like(clean)  # about 25 dB below the harmonics: fills the valleys
    louder = clean * 1.25  # the same spectrum 2 dB up: no valley filled
    stft, mel = MultiResolutionSTFTLoss(), MultiScaleMelLoss(16000)
    # relative to a plain level change, valley noise costs far more under linear bins than under mel bands
    assert stft(noisy, clean) / stft(louder, clean) > 1.5 * (mel(noisy, clean) / mel(louder, clean))
