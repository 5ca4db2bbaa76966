"""tokenlm.codecs: audio <-> multi-codebook tokens, offline and streaming.

    >>> import tokenlm.codecs as tc
    >>> codec = tc.load("default")                 # bundled 16 kHz speech codec
    >>> codes = codec.encode(wav)                  # wav [B, 1, T] -> codes [B, Q, F]
    >>> audio = codec.decode(codes)                # -> [B, 1, F * hop_length]
    >>> with codec.streaming(batch_size=1):       # frame by frame, same result
    ...     codes = codec.encode(chunk)            # chunk: whole frames
"""

from .base import Codec
from .checkpoint import (
    UntrainedCodecWarning,
    bundled_codecs,
    bundled_for_tokens,
    load,
    load_codec,
    save_codec,
    untrained,
)
from .rvq_codec import DEFAULT_PRESET, PRESETS, CodecOutput, RVQCodec, RVQCodecConfig
from .tokenfile import TokenFile, load_tokens, save_tokens


def __getattr__(name):
    # the encodec package pulls in torchaudio: import it only when asked for
    if name == "EncodecCodec":
        from .encodec_backend import EncodecCodec

        return EncodecCodec
    raise AttributeError(f"module 'tokenlm.codecs' has no attribute {name!r}")


__all__ = [
    "DEFAULT_PRESET",
    "EncodecCodec",
    "PRESETS",
    "Codec",
    "CodecOutput",
    "RVQCodec",
    "RVQCodecConfig",
    "TokenFile",
    "UntrainedCodecWarning",
    "bundled_codecs",
    "bundled_for_tokens",
    "load",
    "load_codec",
    "load_tokens",
    "save_codec",
    "save_tokens",
    "untrained",
]
