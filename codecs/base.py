"""The interface every codec backend implements.

A codec turns a waveform ``wav [B, C, T]`` at ``sample_rate`` into integer codes
``codes [B, Q, F]`` (Q codebooks of ``codebook_size`` entries, F frames at
``frame_rate``) and back. Encoding with fewer codebooks gives a lower bitrate; decoding
takes any number of codebooks from 1 to ``num_codebooks``.

``with codec.streaming(batch_size):`` switches to frame-by-frame operation: ``encode``
and ``decode`` then take chunks of whole frames and keep state between calls, and the
concatenated output equals the offline output.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager

import torch
from torch import nn

from tokenlm.audio import check_finite
from tokenlm.errors import AudioError, CodecError

from .streaming import reset_streaming, select_rows, streaming_context, streaming_modules


class Codec(nn.Module):
    """Base class: subclasses set the attributes below and implement ``_encode``/``_decode``."""

    name: str = "codec"
    sample_rate: int
    channels: int
    hop_length: int  # samples per frame
    num_codebooks: int
    codebook_size: int
    supports_streaming: bool = True

    # ---- description ---------------------------------------------------------------------
    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def bitrate(self, num_codebooks: int | None = None) -> float:
        """Bits per second with ``num_codebooks`` codebooks (all by default)."""
        n = self.num_codebooks if num_codebooks is None else num_codebooks
        return self.frame_rate * n * math.log2(self.codebook_size)

    def num_frames(self, num_samples: int) -> int:
        """Frames that encoding ``num_samples`` samples produces (the input is padded to whole frames)."""
        return -(-num_samples // self.hop_length)

    @property
    def config_dict(self) -> dict:
        """JSON-serialisable description of the model (architecture, not weights)."""
        return {"name": self.name}

    @property
    def fingerprint(self) -> str:
        """A short hash of config and weights: token files record it to catch codec mix-ups.

        Cached, and recomputed when any weight changes (tensor version counters move on
        every in-place update: training steps, ``load_state_dict``, EMA codebook updates).
        """
        state = self.state_dict(keep_vars=True)
        key = tuple((k, id(t), t._version) for k, t in state.items())
        cached = getattr(self, "_fingerprint_cache", None)
        if cached is None or cached[0] != key:
            cached = self._fingerprint_cache = (key, fingerprint_state(self.config_dict, state))
        return cached[1]

    def codebook_vectors(self) -> torch.Tensor:
        """The vector each code stands for, ``[num_codebooks, codebook_size, D]`` (fp32, detached):
        what a token LM can use to embed codes by their meaning. Codecs without codebooks of vectors
        raise NotImplementedError."""
        raise NotImplementedError(f"{type(self).__name__} does not expose codebook vectors")

    def token_state_keys(self, state: dict) -> list[str]:
        """The weights that decide what a code means (encoder and codebooks); all by default."""
        return list(state)

    @property
    def token_config(self) -> dict:
        """The part of :attr:`config_dict` that decides what a code means; all of it by default."""
        return self.config_dict

    @property
    def token_fingerprint(self) -> str:
        """Like :attr:`fingerprint`, over only the weights that give codes their meaning.

        Two codecs with the same token fingerprint read and write the same codes (one may have a
        better-trained decoder): token files and token LMs made with one work with the other."""
        state = self.state_dict(keep_vars=True)
        keys = self.token_state_keys(state)
        key = tuple((k, id(state[k]), state[k]._version) for k in keys)
        cached = getattr(self, "_token_fingerprint_cache", None)
        if cached is None or cached[0] != key:
            cached = self._token_fingerprint_cache = (
                key, fingerprint_state(self.token_config, {k: state[k] for k in keys}))
        return cached[1]

    def describe(self) -> dict:
        return {
            "codec": self.name,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frame_rate": self.frame_rate,
            "hop_length": self.hop_length,
            "num_codebooks": self.num_codebooks,
            "codebook_size": self.codebook_size,
            "bitrate_kbps": self.bitrate() / 1000,
            "fingerprint": self.fingerprint,
        }

    # ---- public API ----------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, wav: torch.Tensor, num_codebooks: int | None = None) -> torch.Tensor:
        """``wav [B, C, T]`` float -> ``codes [B, Q, F]`` int64.

        Offline, T is zero-padded up to whole frames. While streaming, T must be a
        multiple of ``hop_length``.
        """
        n = self._check_num_codebooks(num_codebooks)
        wav = self._check_wav(wav)
        if self.is_streaming:
            if wav.shape[-1] % self.hop_length:
                raise AudioError(
                    f"while streaming, encode() takes whole frames: {wav.shape[-1]} samples is not a "
                    f"multiple of hop_length={self.hop_length}"
                )
        else:
            pad = self.num_frames(wav.shape[-1]) * self.hop_length - wav.shape[-1]
            wav = nn.functional.pad(wav, (0, pad))
        codes = self._encode(wav, n)
        return codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, Q, F]`` with 1 <= Q <= num_codebooks -> ``wav [B, C, F * hop_length]``."""
        self.check_codes(codes)
        return self._decode(codes.long())

    @contextmanager
    def streaming(self, batch_size: int = 1):
        """Stream frame by frame; state for ``batch_size`` independent items lives until exit."""
        if not self.supports_streaming:
            raise CodecError(f"codec '{self.name}' does not support streaming")
        p = next(self.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        with streaming_context(self, batch_size, device, torch.float32):
            self._stream_batch_size = batch_size
            try:
                yield self
            finally:
                self._stream_batch_size = None

    @property
    def is_streaming(self) -> bool:
        return getattr(self, "_stream_batch_size", None) is not None

    def reset_streaming(self, mask: torch.Tensor) -> None:
        """Restart the batch items where ``mask [B]`` is True; the others go on."""
        reset_streaming(self, mask)

    @contextmanager
    def streaming_rows(self, rows, part: str | None = None):
        """While streaming, work on the batch items ``rows`` only: ``encode``/``decode`` inside the
        block take ``len(rows)`` items (in that order) and advance only their state. ``part``
        (``"encoder"`` or ``"decoder"``, where the backend has them) limits the bookkeeping to the
        modules the block uses."""
        if not self.is_streaming:
            raise CodecError("streaming_rows() needs a `streaming()` context")
        rows = list(rows)
        outer = self._stream_batch_size
        if rows == list(range(outer)):  # every item, in order: nothing to select
            yield self
            return
        p = next(self.parameters(), None)
        idx = torch.as_tensor(rows, dtype=torch.long, device=p.device if p is not None else "cpu")
        root = getattr(self, part, self) if part else self
        with select_rows(root, idx):
            self._stream_batch_size = len(idx)
            try:
                yield self
            finally:
                self._stream_batch_size = outer

    # ---- checks --------------------------------------------------------------------------
    def check_codes(self, codes: torch.Tensor) -> None:
        """Raise CodecError unless ``codes`` is an integer ``[B, Q, F]`` tensor this codec can decode."""
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise CodecError(f"codes must be an integer tensor [B, Q, F], got {shape}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool or codes.is_complex():
            raise CodecError(f"codes must be integers, got {codes.dtype}")
        q = codes.shape[1]
        if not 1 <= q <= self.num_codebooks:
            raise CodecError(f"codes have {q} codebooks; codec '{self.name}' takes 1 to {self.num_codebooks}")
        if codes.numel():
            lo, hi = int(codes.min()), int(codes.max())
            if lo < 0 or hi >= self.codebook_size:
                raise CodecError(
                    f"codes out of range: values span [{lo}, {hi}] but codec '{self.name}' has "
                    f"codebook_size={self.codebook_size} (valid 0..{self.codebook_size - 1})"
                )
        if self.is_streaming and codes.shape[0] != self._stream_batch_size:
            raise CodecError(f"streaming batch size is {self._stream_batch_size}, codes have batch {codes.shape[0]}")

    def _check_num_codebooks(self, n: int | None) -> int:
        if n is None:
            return self.num_codebooks
        if not 1 <= int(n) <= self.num_codebooks:
            raise CodecError(f"num_codebooks must be 1..{self.num_codebooks} for codec '{self.name}', got {n}")
        return int(n)

    def _check_wav(self, wav: torch.Tensor) -> torch.Tensor:
        if not isinstance(wav, torch.Tensor) or wav.dim() != 3:
            shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise AudioError(f"expected a waveform [B, C, T], got {shape}")
        if wav.shape[1] != self.channels:
            raise AudioError(
                f"codec '{self.name}' takes {self.channels} channel(s), got {wav.shape[1]}; "
                "mix with tokenlm.audio.convert_channels"
            )
        if wav.shape[-1] == 0 and not self.is_streaming:
            raise AudioError("waveform has no samples")
        if not wav.dtype.is_floating_point:
            raise AudioError(f"waveform must be floating point, got {wav.dtype}")
        check_finite(wav, "waveform")
        if self.is_streaming and wav.shape[0] != self._stream_batch_size:
            raise AudioError(f"streaming batch size is {self._stream_batch_size}, waveform has batch {wav.shape[0]}")
        p = next(self.parameters(), None)
        if p is not None:
            wav = wav.to(p.device, torch.float32)
        return wav

    # ---- backends implement --------------------------------------------------------------
    def _encode(self, wav: torch.Tensor, num_codebooks: int) -> torch.Tensor:
        raise NotImplementedError

    def _decode(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def fingerprint_state(config: dict, state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over a canonical config and every tensor's name, dtype, shape and bytes (16 hex chars)."""
    import json

    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


__all__ = ["Codec", "fingerprint_state", "streaming_modules"]
