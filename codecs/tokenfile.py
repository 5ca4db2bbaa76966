"""Token files: the codes of one audio item, bit-packed, with everything needed to decode them.

Format (version 1)
==================

A token file (extension ``.tok``) is a `safetensors <https://github.com/huggingface/safetensors>`_
file holding exactly one tensor and one metadata entry:

``codes`` (tensor, dtype ``uint8``, shape ``[ceil(Q * F * bits_per_code / 8)]``)
    The codes ``[Q, F]`` (Q codebooks, F frames) flattened row-major -- all F frames of
    codebook 0, then all of codebook 1, ... -- each code written as ``bits_per_code`` bits,
    least significant bit first, into one bit stream. The stream fills each byte starting
    at its least significant bit (``numpy.packbits(..., bitorder="little")``); the unused
    high bits of the last byte are zero. ``bits_per_code = ceil(log2(codebook_size))``
    (at least 1), so 1024 codes take 10 bits, 1000 codes also 10, 64 codes 6.

``__metadata__["tokenlm"]`` (string)
    JSON object with these fields:

    ===================== ========================================================================
    ``format``            ``"tokenlm-tokens"``
    ``version``           ``1``; readers refuse files with a larger version
    ``codec``             ``codec.name`` of the codec that wrote the codes (e.g. ``"tokenlm-rvq"``)
    ``codec_fingerprint`` ``codec.fingerprint``: 16 hex digits hashing config and weights
    ``codec_token_fingerprint`` optional: ``codec.token_fingerprint``, over the weights that
                          give codes their meaning (encoder, codebooks); a codec that matches it
                          (e.g. one with a retrained decoder) may decode the file
    ``codec_config``      ``codec.config_dict`` (architecture, JSON)
    ``codec_source``      optional: how the codec was named when encoding (``"default"``,
                          ``"tiny"``, a checkpoint path, ...); ``tokenlm decode`` loads it
    ``codec_weights``     optional: the weights path given when encoding (EnCodec)
    ``sample_rate``       Hz of the audio the codec takes and returns
    ``channels``          audio channels
    ``frame_rate``        frames per second (``sample_rate / hop_length``)
    ``hop_length``        audio samples per frame
    ``num_codebooks``     Q as written: may be fewer than the codec has (lower bitrate)
    ``codebook_size``     entries per codebook; every code is below it
    ``bits_per_code``     bits per code in the payload
    ``num_frames``        F
    ``num_samples``       audio length before padding to whole frames; decoding trims to it
    ``created_by``        ``"tokenlm <version>"``
    ===================== ========================================================================

Readers check the payload size against ``num_codebooks * num_frames * bits_per_code``,
every code against ``codebook_size``, and, before decoding, the codec's fingerprint against
``codec_fingerprint`` (or ``codec_token_fingerprint``): codes are only meaningful to the exact codec (config *and* weights)
that produced them. Files are written to a temporary name and renamed into place.

    >>> save_tokens("speech.tok", codes, codec, num_samples=wav.shape[-1])
    >>> tf = load_tokens("speech.tok")
    >>> wav = tf.decode(codec)          # [C, num_samples]; TokenFileError if codec differs
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenlm.errors import TokenFileError
from tokenlm.fileio import atomic_write

__all__ = ["FORMAT", "VERSION", "TokenFile", "bits_per_code", "load_tokens", "pack_codes", "save_tokens", "unpack_codes"]

FORMAT, VERSION = "tokenlm-tokens", 1
META_KEY, TENSOR_KEY = "tokenlm", "codes"
MAX_BITS = 32


def bits_per_code(codebook_size: int) -> int:
    """Bits that one code of a ``codebook_size``-entry codebook takes on disk (at least 1)."""
    return max(1, (int(codebook_size) - 1).bit_length())  # exact ceil(log2(n)) for ints


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Non-negative integer codes (any shape, flattened row-major) -> bit-packed uint8 array."""
    flat = np.ascontiguousarray(codes, dtype=np.int64).reshape(-1)
    shifts = np.arange(bits, dtype=np.int64)
    bitmat = ((flat[:, None] >> shifts) & 1).astype(np.uint8)  # [N, bits], LSB first
    return np.packbits(bitmat.reshape(-1), bitorder="little")


def unpack_codes(payload: np.ndarray, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: the first ``count`` codes of ``bits`` bits, int64 ``[count]``."""
    bitmat = np.unpackbits(payload, count=count * bits, bitorder="little").reshape(count, bits)
    weights = np.left_shift(np.int64(1), np.arange(bits, dtype=np.int64))
    return bitmat.astype(np.int64) @ weights


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tokenlm")
    except Exception:
        return "unknown"


# ---- writing ------------------------------------------------------------------------------


def save_tokens(
    path: str | os.PathLike,
    codes: torch.Tensor,
    codec,
    num_samples: int,
    *,
    codec_source: str | None = None,
    codec_weights: str | None = None,
) -> Path:
    """Write ``codes`` (``[Q, F]`` or ``[1, Q, F]``) that ``codec`` made from ``num_samples`` samples.

    ``codec_source`` / ``codec_weights``: how to load the codec again (recorded for
    ``tokenlm decode``). Raises :class:`~tokenlm.errors.CodecError` if the codes are not
    valid for ``codec``. The file appears atomically (temporary file, then rename).
    """
    from safetensors.numpy import save_file

    path = Path(path)
    codes = torch.as_tensor(codes)
    if codes.dim() == 3 and codes.shape[0] == 1:
        codes = codes[0]
    if codes.dim() != 2:
        raise TokenFileError(f"{path}: a token file holds codes [Q, F] (or [1, Q, F]), got shape {tuple(codes.shape)}")
    codec.check_codes(codes[None])  # dtype, 1 <= Q <= num_codebooks, 0 <= code < codebook_size
    q, f = codes.shape
    hop = int(codec.hop_length)
    if f < 1:
        raise TokenFileError(f"{path}: codes have no frames")
    num_samples = int(num_samples)
    if not 0 < num_samples <= f * hop:
        raise TokenFileError(
            f"{path}: num_samples={num_samples} does not fit {f} frames of {hop} samples (1..{f * hop})"
        )
    bits = bits_per_code(int(codec.codebook_size))
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "codec": codec.name,
        "codec_fingerprint": codec.fingerprint,
        "codec_token_fingerprint": codec.token_fingerprint,
        "codec_config": codec.config_dict,
    }
    if codec_source is not None:
        meta["codec_source"] = str(codec_source)
    if codec_weights is not None:
        meta["codec_weights"] = str(codec_weights)
    meta.update(
        sample_rate=int(codec.sample_rate),
        channels=int(codec.channels),
        frame_rate=float(codec.frame_rate),
        hop_length=hop,
        num_codebooks=int(q),
        codebook_size=int(codec.codebook_size),
        bits_per_code=bits,
        num_frames=int(f),
        num_samples=num_samples,
        created_by=f"tokenlm {_version()}",
    )
    payload = pack_codes(codes.detach().to("cpu", torch.int64).numpy(), bits)
    header = {META_KEY: json.dumps(meta, sort_keys=False)}

    return atomic_write(path, lambda tmp: save_file({TENSOR_KEY: payload}, tmp, metadata=header))


# ---- reading ------------------------------------------------------------------------------


@dataclass
class TokenFile:
    """The contents of a token file: ``codes`` int64 ``[Q, F]`` and the metadata dict."""

    codes: torch.Tensor
    meta: dict
    path: Path | None = None
    file_bytes: int | None = field(default=None, repr=False)

    @property
    def num_codebooks(self) -> int:
        return int(self.meta["num_codebooks"])

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def num_samples(self) -> int:
        return int(self.meta["num_samples"])

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    @property
    def frame_rate(self) -> float:
        return float(self.meta["frame_rate"])

    @property
    def codebook_size(self) -> int:
        return int(self.meta["codebook_size"])

    @property
    def bits_per_code(self) -> int:
        return int(self.meta["bits_per_code"])

    @property
    def bitrate_kbps(self) -> float:
        """Bitrate of the stored codes: ``frame_rate * Q * bits_per_code / 1000``."""
        return self.frame_rate * self.num_codebooks * self.bits_per_code / 1000

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate

    @property
    def codec_source(self) -> str | None:
        return self.meta.get("codec_source")

    def __repr__(self) -> str:
        return (
            f"TokenFile({self._where()!r}, codec={self.meta.get('codec')!r}, "
            f"num_codebooks={self.num_codebooks}, num_frames={self.num_frames}, "
            f"num_samples={self.num_samples}, sample_rate={self.sample_rate})"
        )

    def _where(self) -> str:
        return str(self.path) if self.path is not None else "token file"

    def check_codec(self, codec) -> None:
        """Raise :class:`TokenFileError` unless ``codec`` is the codec that wrote these codes."""
        meta = self.meta
        if codec.fingerprint == meta.get("codec_fingerprint"):
            return
        if meta.get("codec_token_fingerprint") and codec.token_fingerprint == meta["codec_token_fingerprint"]:
            return  # same encoder and codebooks (e.g. a retrained decoder): the codes mean the same
        reasons = []
        if codec.name != meta.get("codec"):
            reasons.append(f"a different codec type ('{meta.get('codec')}' vs '{codec.name}')")
        if int(codec.sample_rate) != self.sample_rate:
            reasons.append(f"the file is {self.sample_rate} Hz, the codec {codec.sample_rate} Hz")
        if int(codec.codebook_size) != self.codebook_size:
            reasons.append(f"the file has codebook size {self.codebook_size}, the codec {codec.codebook_size}")
        if not reasons:
            same_config = codec.config_dict == meta.get("codec_config")
            reasons.append("same architecture, different weights" if same_config else "a different config")
        source = meta.get("codec_source") or meta.get("codec")
        raise TokenFileError(
            f"{self._where()} was written by codec '{meta.get('codec')}' (fingerprint "
            f"{meta.get('codec_fingerprint')}), but the codec given is '{codec.name}' (fingerprint "
            f"{codec.fingerprint}): {', '.join(reasons)}; decode with the codec that wrote it "
            f"(--codec {source})"
        )

    @torch.no_grad()
    def decode(self, codec) -> torch.Tensor:
        """Check ``codec``, decode offline and trim: float32 ``[C, num_samples]`` on the CPU."""
        self.check_codec(codec)
        p = next(codec.parameters(), None)
        codes = self.codes[None]
        if p is not None:
            codes = codes.to(p.device)
        wav = codec.decode(codes)[0]
        return wav[..., : self.num_samples].to("cpu", torch.float32)

    def info(self) -> dict:
        """JSON-ready summary of the file."""
        m = self.meta
        return {
            "path": str(self.path) if self.path is not None else None,
            "codec": m.get("codec"),
            "codec_fingerprint": m.get("codec_fingerprint"),
            "codec_source": m.get("codec_source"),
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "frame_rate": self.frame_rate,
            "hop_length": int(m["hop_length"]),
            "num_codebooks": self.num_codebooks,
            "codebook_size": self.codebook_size,
            "bits_per_code": self.bits_per_code,
            "num_frames": self.num_frames,
            "num_samples": self.num_samples,
            "duration_s": self.duration_s,
            "bitrate_kbps": self.bitrate_kbps,
            "file_bytes": self.file_bytes,
            "format_version": int(m["version"]),
            "created_by": m.get("created_by"),
        }


_INT_FIELDS = ("sample_rate", "channels", "hop_length", "num_codebooks", "codebook_size", "bits_per_code",
               "num_frames", "num_samples")


def load_tokens(path: str | os.PathLike) -> TokenFile:
    """Read a token file written by :func:`save_tokens`; every problem raises :class:`TokenFileError`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.exists():
        raise TokenFileError(f"{path}: no such file")
    if path.is_dir():
        if (path / "model.safetensors").exists():
            raise TokenFileError(f"{path}: is a codec checkpoint folder, not a token file (pass it with --codec)")
        raise TokenFileError(f"{path}: is a directory, not a token file")
    size = path.stat().st_size
    if size == 0:
        raise TokenFileError(f"{path}: empty file, not a token file")
    try:
        with safe_open(str(path), framework="np") as f:
            raw_meta = f.metadata() or {}
            keys = list(f.keys())
            payload = f.get_tensor(TENSOR_KEY) if TENSOR_KEY in keys else None
    except (SafetensorError, OSError, ValueError) as e:
        reason = " ".join(str(e).split())
        raise TokenFileError(f"{path}: not a token file: not a safetensors file, or truncated ({reason})") from None

    meta = _parse_meta(raw_meta.get(META_KEY), path)
    if payload is None or keys != [TENSOR_KEY]:
        raise TokenFileError(f"{path}: corrupt token file: expected one tensor '{TENSOR_KEY}', found {keys}")
    if payload.dtype != np.uint8 or payload.ndim != 1:
        raise TokenFileError(
            f"{path}: corrupt token file: '{TENSOR_KEY}' must be 1-D uint8, got {payload.dtype} {payload.shape}"
        )
    q, f_, bits = meta["num_codebooks"], meta["num_frames"], meta["bits_per_code"]
    expected = -(-q * f_ * bits // 8)
    if payload.size != expected:
        raise TokenFileError(
            f"{path}: corrupt token file: payload is {payload.size} bytes, but {q} codebooks x {f_} frames x "
            f"{bits} bits need {expected}"
        )
    codes = unpack_codes(payload, q * f_, bits).reshape(q, f_)
    k = meta["codebook_size"]
    hi = int(codes.max()) if codes.size else 0
    if hi >= k:
        raise TokenFileError(
            f"{path}: corrupt token file: holds code {hi} but codebook_size is {k} (valid 0..{k - 1})"
        )
    return TokenFile(codes=torch.from_numpy(codes), meta=meta, path=path, file_bytes=size)


def _parse_meta(raw: str | None, path: Path) -> dict:
    if raw is None:
        raise TokenFileError(
            f"{path}: a safetensors file without tokenlm metadata: not a token file (made by `tokenlm encode`)"
        )
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise TokenFileError(f"{path}: corrupt token-file metadata (invalid JSON: {e})") from None
    if not isinstance(meta, dict):
        raise TokenFileError(f"{path}: corrupt token-file metadata (not a JSON object)")
    fmt = meta.get("format")
    if fmt == "tokenlm-codec":
        raise TokenFileError(f"{path}: is a tokenlm codec checkpoint, not a token file (pass it with --codec)")
    if fmt != FORMAT:
        raise TokenFileError(f"{path}: not a token file (metadata format is {fmt!r}, expected {FORMAT!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise TokenFileError(f"{path}: corrupt token-file metadata (version {version!r})")
    if version > VERSION:
        raise TokenFileError(
            f"{path}: token file version {version} is newer than this tokenlm (reads up to {VERSION}); upgrade tokenlm"
        )
    for key in _INT_FIELDS:
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TokenFileError(f"{path}: corrupt token-file metadata: '{key}' is {value!r}, expected a positive integer")
    if not isinstance(meta.get("frame_rate"), int | float) or meta["frame_rate"] <= 0:
        raise TokenFileError(f"{path}: corrupt token-file metadata: 'frame_rate' is {meta.get('frame_rate')!r}")
    for key in ("codec", "codec_fingerprint"):
        if not isinstance(meta.get(key), str):
            raise TokenFileError(f"{path}: corrupt token-file metadata: '{key}' is missing")
    bits, k = meta["bits_per_code"], meta["codebook_size"]
    if bits > MAX_BITS or k > 2**bits:
        raise TokenFileError(
            f"{path}: corrupt token-file metadata: {bits} bits per code cannot hold codebook_size {k}"
        )
    if meta["num_samples"] > meta["num_frames"] * meta["hop_length"]:
        raise TokenFileError(
            f"{path}: corrupt token-file metadata: num_samples={meta['num_samples']} is more than "
            f"{meta['num_frames']} frames x {meta['hop_length']} samples"
        )
    return meta
