"""A phone judge: a small frozen phone classifier on log-mel frames, the "ears" of a phonetic loss.

A codec's codes can carry nearly all the phone information of the spectrogram while its decoder,
trained on spectral distances alone, renders it blurred (the decoded audio probes 10 points lower
than its own codes: see the README). The phonetic loss makes the decoder's output *sound like the
same phones* as the original: the KL divergence from the judge's phone posteriors on the original
audio to those on the decoded audio, per frame, with the judge frozen (gradients flow through the
decoded audio only). No labels are needed where the loss is used; the judge itself is trained once
on a corpus with phone timings (``recipes/train_phone_judge.py``).

    >>> from tokenlm.codecs.phonetic import load_phone_judge, phonetic_loss
    >>> judge = load_phone_judge("runs/judge")
    >>> kl = phonetic_loss(judge, decoded, original)        # [B, C, T] each
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tokenlm.errors import TokenLMError

PAUSE = "<pause>"


@dataclass
class PhoneJudgeConfig:
    classes: list[str] = field(default_factory=list)  # class names; PAUSE is silence and pauses
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160  # 100 log-mel frames per second; the network's output is at half that
    n_mels: int = 64
    floor: float = 1e-2 * 512 / 1024  # as the codec's mel loss: about 50 dB below speech
    channels: int = 256
    layers: int = 5
    kernel_size: int = 5

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length / 2


class PhoneJudge(nn.Module):
    """Log-mel (fixed normalisation) -> strided conv -> residual conv blocks -> phone logits
    ``[B, F, classes]`` at :attr:`PhoneJudgeConfig.frame_rate` frames per second (frame ``i``
    centred at ``i / frame_rate`` seconds)."""

    def __init__(self, config: PhoneJudgeConfig):
        super().__init__()
        import torchaudio.transforms as T

        if not config.classes:
            raise TokenLMError("a phone judge needs its class names")
        self.config = config
        c, k = config.channels, config.kernel_size
        self.mel = T.MelSpectrogram(config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
                                    n_mels=config.n_mels, power=1.0, center=True)
        self.register_buffer("mean", torch.zeros(config.n_mels))
        self.register_buffer("std", torch.ones(config.n_mels))
        self.inp = nn.Conv1d(config.n_mels, c, k, stride=2, padding=k // 2)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(1, c), nn.Conv1d(c, c, k, padding=k // 2), nn.GELU(), nn.Conv1d(c, c, 1))
            for _ in range(config.layers - 1))
        self.out = nn.Sequential(nn.GroupNorm(1, c), nn.Conv1d(c, len(config.classes), 1))

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, C, T]`` or ``[B, T]`` audio -> log-mel ``[B, n_mels, frames]`` (channels averaged)."""
        if wav.dim() == 3:
            wav = wav.mean(1)
        with torch.autocast(wav.device.type, enabled=False):
            return torch.log(self.mel(wav.float()) + self.config.floor)

    def classify(self, logmel: torch.Tensor) -> torch.Tensor:
        x = (logmel - self.mean[:, None]) / self.std[:, None]
        x = F.gelu(self.inp(x))
        for block in self.blocks:
            x = x + block(x)
        return self.out(x).transpose(1, 2)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(wav))


def save_phone_judge(judge: PhoneJudge, path: str | Path) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"format": "tokenlm-phone-judge", "version": 1,
                                                  "config": asdict(judge.config)}, indent=1) + "\n")
    save_file({k: v.detach().contiguous().cpu() for k, v in judge.state_dict().items()},
              str(path / "model.safetensors"))


def load_phone_judge(path: str | Path, device: str | torch.device = "cpu") -> PhoneJudge:
    """A saved judge, frozen and in eval mode. Raises TokenLMError on a folder that is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        meta = json.loads((path / "config.json").read_text())
        if meta.get("format") != "tokenlm-phone-judge":
            raise TokenLMError(f"{path} is not a phone judge (format {meta.get('format')!r})")
        judge = PhoneJudge(PhoneJudgeConfig(**meta["config"]))
        judge.load_state_dict(load_file(str(path / "model.safetensors")))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        if isinstance(e, TokenLMError):
            raise
        raise TokenLMError(f"cannot load a phone judge from {path}: {e}") from None
    judge.requires_grad_(False)
    return judge.eval().to(device)


def phonetic_loss(judge: PhoneJudge, est: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Mean per-frame KL(judge(ref) || judge(est)) and the share of frames where the judge's best
    phone is the same for both. ``est`` carries the gradient; the judge is frozen."""
    with torch.no_grad():
        p_log = F.log_softmax(judge(ref).float(), -1)
    q_log = F.log_softmax(judge(est).float(), -1)
    frames = min(p_log.shape[1], q_log.shape[1])
    p_log, q_log = p_log[:, :frames], q_log[:, :frames]
    kl = (p_log.exp() * (p_log - q_log)).sum(-1).mean()
    agree = (p_log.argmax(-1) == q_log.argmax(-1)).float().mean().item()
    return kl, agree
