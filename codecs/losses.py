"""Training losses for the codec: multi-scale mel and linear STFT reconstruction, an MS-STFT discriminator.

The discriminator looks at complex STFTs at several resolutions (real and imaginary parts
as two channels of a 2-D conv net), as in EnCodec-style codecs; the generator gets a
hinge adversarial loss and a feature-matching loss on its layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiScaleMelLoss(nn.Module):
    """Mean over STFT sizes of L1(log mel) + L1(mel): the reconstruction loss that tracks hearing.

    The log is taken of ``mel + floor`` with the floor about 50 dB below speech at -24 dBFS
    (scaled with the STFT size, as magnitudes are): below it nothing is audible, and
    without it the digital silence around synthetic utterances (log 0) dominates the loss
    and teaches the codec to whisper.
    """

    def __init__(self, sample_rate: int, n_ffts: tuple[int, ...] = (128, 256, 512, 1024, 2048), n_mels: int = 64,
                 floor: float = 1e-2):
        super().__init__()
        import torchaudio.transforms as T

        self.floors = [floor * n / 1024 for n in n_ffts]
        self.mels = nn.ModuleList(
            T.MelSpectrogram(sample_rate, n_fft=n, hop_length=n // 4, n_mels=min(n_mels, n // 8), power=1.0,
                             center=True, normalized=False, f_min=0.0)
            for n in n_ffts
        )

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:  # [B, C, T] each
        loss = est.new_zeros(())
        with torch.autocast(est.device.type, enabled=False):
            for mel, floor in zip(self.mels, self.floors):
                e, r = mel(est.float()), mel(ref.float())
                loss = loss + F.l1_loss(e, r) + F.l1_loss(torch.log(e + floor), torch.log(r + floor))
        return loss / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over STFT sizes of spectral convergence + L1(log |STFT|), on linear frequency bins.

    Mel bands average neighbouring harmonics together above a kilohertz or so, so a mel
    loss alone lets a decoder fill the valleys between harmonics with noise (heard as
    hoarseness; PESQ punishes it). Linear bins at 512-2048 points resolve the harmonics.
    The floor, scaled with the STFT size, sits about 60 dB below speech at -24 dBFS.
    """

    def __init__(self, n_ffts: tuple[int, ...] = (512, 1024, 2048), floor: float = 3e-3):
        super().__init__()
        self.n_ffts = tuple(n_ffts)
        self.floors = [floor * n / 1024 for n in self.n_ffts]
        for n in self.n_ffts:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:  # [B, C, T] each
        loss = est.new_zeros((), dtype=torch.float32)
        with torch.autocast(est.device.type, enabled=False):
            e_all, r_all = est.float().flatten(0, 1), ref.float().flatten(0, 1)
            for n, floor in zip(self.n_ffts, self.floors):
                w = getattr(self, f"window_{n}")
                e = torch.stft(e_all, n, n // 4, window=w, return_complex=True).abs()
                r = torch.stft(r_all, n, n // 4, window=w, return_complex=True).abs()
                sc = torch.linalg.vector_norm(e - r) / torch.linalg.vector_norm(r).clamp_min(1e-5)
                loss = loss + sc + F.l1_loss(torch.log(e + floor), torch.log(r + floor))
        return loss / len(self.n_ffts)


class _STFTDisc(nn.Module):
    def __init__(self, n_fft: int, channels: int, in_channels: int = 1):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        c = channels
        # strided along frequency from the first layer: keeps the CPU cost of a step reasonable
        self.convs = nn.ModuleList([
            nn.Conv2d(2 * in_channels, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 9), stride=(2, 2), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(c, c, (3, 3), padding=(1, 1)),
        ])
        self.out = nn.Conv2d(c, 1, (3, 3), padding=(1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, ch, t = x.shape
        with torch.autocast(x.device.type, enabled=False):
            spec = torch.stft(x.float().reshape(b * ch, t), self.n_fft, self.n_fft // 4, window=self.window,
                              return_complex=True, normalized=True)  # [B*C, F, N]
        spec = torch.view_as_real(spec).reshape(b, ch, *spec.shape[1:], 2)
        h = spec.permute(0, 1, 4, 3, 2).reshape(b, ch * 2, spec.shape[3], spec.shape[2])  # [B, 2C, time, freq]
        feats = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            feats.append(h)
        return self.out(h), feats


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, n_ffts: tuple[int, ...] = (1024, 512, 256), channels: int = 16, in_channels: int = 1):
        super().__init__()
        self.discs = nn.ModuleList(_STFTDisc(n, channels, in_channels) for n in n_ffts)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, feats = zip(*(d(x) for d in self.discs))
        return list(logits), list(feats)


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss: push real logits above 1 and fake below -1."""
    loss = sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits))
    return loss / len(real_logits)


def generator_adversarial_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - f).mean() for f in fake_logits) / len(fake_logits)


def feature_matching_loss(real_feats: list[list[torch.Tensor]], fake_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between discriminator features of real and decoded audio, relative to the real features' scale."""
    loss, n = 0.0, 0
    for rs, fs in zip(real_feats, fake_feats):
        for r, f in zip(rs, fs):
            r = r.detach()
            loss = loss + F.l1_loss(f, r) / r.abs().mean().clamp_min(1e-5)
            n += 1
    return loss / n
