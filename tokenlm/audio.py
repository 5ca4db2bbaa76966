"""Reading and writing audio.

Files are read with soundfile (wav, flac, ogg/vorbis, ...), resampled with
torchaudio's functional resampler and mixed to the channel count the caller asks
for. Everything that makes a file unusable raises :class:`~tokenlm.errors.AudioError`
naming the file and the problem; a different sample rate is resampled, never rejected.

Waveforms are float32 tensors shaped ``[C, T]`` (channels first), values in [-1, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .errors import AudioError
from .fileio import atomic_write

__all__ = ["load_audio", "save_audio", "resample", "convert_channels", "check_finite", "audio_info"]

WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def resample(wav: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample ``[..., T]`` from ``orig_sr`` to ``new_sr`` (band-limited sinc interpolation)."""
    if orig_sr == new_sr:
        return wav
    import torchaudio.functional as AF  # torchaudio import is slow: only when needed

    return AF.resample(wav, orig_sr, new_sr)


def convert_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """Mix ``[C, T]`` (or ``[B, C, T]``) to ``channels``: average down to mono, copy mono up."""
    have = wav.shape[-2]
    if have == channels:
        return wav
    mono = wav.mean(dim=-2, keepdim=True)
    if channels == 1:
        return mono
    return mono.expand(*wav.shape[:-2], channels, wav.shape[-1]).contiguous()


def check_finite(wav: torch.Tensor, what: str = "audio") -> None:
    """Raise AudioError if ``wav`` holds NaN or infinite samples."""
    if not torch.isfinite(wav).all():
        bad = int((~torch.isfinite(wav)).sum())
        raise AudioError(f"{what}: contains {bad} NaN or infinite sample(s)")


def audio_info(path: str | os.PathLike) -> dict:
    """Sample rate, channels, frames and duration of an audio file, without decoding it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types for unreadable files
        raise AudioError(f"{path}: cannot read audio ({_reason(e)})") from None
    return {
        "path": str(path),
        "sample_rate": info.samplerate,
        "channels": info.channels,
        "num_samples": info.frames,
        "duration_s": info.frames / info.samplerate if info.samplerate else 0.0,
        "format": info.format,
        "subtype": info.subtype,
    }


def load_audio(
    path: str | os.PathLike, sample_rate: int | None = None, channels: int | None = None
) -> tuple[torch.Tensor, int]:
    """Read an audio file as float32 ``[C, T]``.

    ``sample_rate``: resample to this rate (None keeps the file's). ``channels``: mix to
    this many channels (None keeps the file's). Returns ``(wav, sample_rate)``.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except Exception as e:
        raise AudioError(f"{path}: cannot read audio ({_reason(e)})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples (zero-length audio)")
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    check_finite(wav, str(path))
    if channels is not None:
        wav = convert_channels(wav, channels)
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


def save_audio(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int, subtype: str | None = None) -> Path:
    """Write ``[C, T]`` (or ``[T]``) to wav/flac/ogg, chosen by extension.

    The file is written to a temporary name and renamed into place, so an error never
    leaves a half-written file behind nor clobbers an existing one.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: cannot write '{path.suffix}' files; use one of {', '.join(WRITE_FORMATS)}")
    wav = wav.detach().to("cpu", torch.float32)
    if wav.dim() == 1:
        wav = wav[None]
    if wav.dim() != 2:
        raise AudioError(f"{path}: expected a [C, T] waveform, got shape {tuple(wav.shape)}")
    check_finite(wav, f"{path} (waveform to write)")
    if subtype is None:
        subtype = {"WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    data = wav.clamp(-1.0, 1.0).T.numpy()
    try:
        return atomic_write(path, lambda tmp: sf.write(tmp, data, sample_rate, format=fmt, subtype=subtype))
    except Exception as e:
        raise AudioError(f"{path}: cannot write audio ({_reason(e)})") from None


def _reason(e: Exception) -> str:
    msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    # soundfile prefixes messages with the path; keep just the reason
    if ": " in msg and msg.startswith(("Error opening", "Error")):
        msg = msg.split(": ", 1)[-1]
    return msg
