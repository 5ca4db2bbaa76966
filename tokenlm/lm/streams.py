"""Parallel token streams, their special ids, and the delays that set the task.

A token LM sees ``K`` streams per frame, stacked as ``[B, K, T]`` integer tensors. Each stream is
described by a :class:`StreamSpec`: its kind (``"text"`` or ``"audio"``), its cardinality (real
tokens are ``0 .. card-1``), a delay in frames, whether the model generates it or only reads it,
and its weight in the loss.

Special ids, after the real ones:

============  ==================  ==========================================================
stream kind   id                  meaning
============  ==================  ==========================================================
text          ``card``            PAD: no new text at this frame
text          ``card + 1``        EPAD: end of padding, the next frame starts a word
text          ``card + 2``        START: the frame before the first frame
audio         ``card``            START
any           :data:`ZERO` (-1)    no input here; embeds to the zero vector (audio only in data)
any           :data:`UNGENERATED`  a placeholder for a token still to be sampled; never embedded
============  ==================  ==========================================================

Delays: stream ``k`` is shifted right by ``delay_k`` frames (:func:`apply_delays`); the frames before
a stream starts and after it ends hold its fill token (PAD for text, ZERO for audio) and are
*invalid*: no loss, and at generation time they are forced rather than sampled.
:func:`undo_delays` shifts back. ASR delays text after audio, TTS audio after text, and the
acoustic codebooks may lag the first codebook (``acoustic_delay``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

__all__ = [
    "ZERO",
    "UNGENERATED",
    "StreamSpec",
    "Streams",
    "apply_delays",
    "undo_delays",
    "place_words",
]

ZERO = -1
UNGENERATED = -2
KINDS = ("text", "audio")


@dataclass(frozen=True)
class StreamSpec:
    name: str
    kind: str
    card: int
    delay: int = 0
    generated: bool = True
    weight: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"stream {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.card < 1 or self.delay < 0 or self.weight < 0:
            raise ValueError(f"stream {self.name!r}: card >= 1, delay >= 0 and weight >= 0 are required")

    # --- special ids
    @property
    def pad_id(self) -> int:
        if self.kind != "text":
            raise ValueError(f"stream {self.name!r} is audio: it has no PAD (use ZERO)")
        return self.card

    @property
    def epad_id(self) -> int:
        if self.kind != "text":
            raise ValueError(f"stream {self.name!r} is audio: it has no EPAD")
        return self.card + 1

    @property
    def start_id(self) -> int:
        return self.card + 2 if self.kind == "text" else self.card

    @property
    def fill_id(self) -> int:
        """What the stream holds where it has no data (before its delay, after its end)."""
        return self.pad_id if self.kind == "text" else ZERO

    @property
    def input_vocab(self) -> int:
        """Rows of the stream's embedding table (real ids + specials, START included)."""
        return self.start_id + 1

    @property
    def output_vocab(self) -> int:
        """Logits the model produces for the stream (text: real ids + PAD + EPAD)."""
        return self.card + 2 if self.kind == "text" else self.card


class Streams(tuple):
    """An ordered tuple of :class:`StreamSpec` with helpers; serialises to a list of dicts."""

    def __new__(cls, specs: Sequence[StreamSpec | dict]):
        specs = tuple(s if isinstance(s, StreamSpec) else StreamSpec(**s) for s in specs)
        if not specs:
            raise ValueError("at least one stream is needed")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique, got {names}")
        if not any(s.generated for s in specs):
            raise ValueError("at least one stream must be generated")
        return super().__new__(cls, specs)

    @property
    def delays(self) -> list[int]:
        return [s.delay for s in self]

    @property
    def max_delay(self) -> int:
        return max(self.delays)

    @property
    def generated(self) -> list[int]:
        """Indices of the generated streams, in the order the depth transformer samples them."""
        return [i for i, s in enumerate(self) if s.generated]

    @property
    def start_ids(self) -> list[int]:
        return [s.start_id for s in self]

    @property
    def fill_ids(self) -> list[int]:
        return [s.fill_id for s in self]

    def index(self, name: str) -> int:  # type: ignore[override]
        for i, s in enumerate(self):
            if s.name == name:
                return i
        raise KeyError(f"no stream named {name!r}; streams: {[s.name for s in self]}")

    def to_list(self) -> list[dict]:
        return [asdict(s) for s in self]

    # --- the tasks
    @classmethod
    def build(cls, text_card: int, audio_card: int, num_codebooks: int, *, text_delay: int = 0,
              audio_delay: int = 0, acoustic_delay: int = 0, text_generated: bool = True,
              audio_generated: bool = True, input_audio: bool = False, text_weight: float = 1.0,
              semantic_weight: float = 1.0, acoustic_weight: float = 1.0) -> Streams:
        """One text stream and ``num_codebooks`` audio streams (``audio_0 .. audio_{Q-1}``).

        ``audio_delay`` shifts all of the (generated) audio; codebooks 1.. lag codebook 0 by
        ``acoustic_delay`` more. ``input_audio`` adds ``num_codebooks`` input-only streams
        (``in_0 ..``, undelayed) for the other speaker in full duplex."""
        specs = [StreamSpec("text", "text", text_card, text_delay, text_generated, text_weight)]
        for q in range(num_codebooks):
            specs.append(StreamSpec(f"audio_{q}", "audio", audio_card, audio_delay + (acoustic_delay if q else 0),
                                    audio_generated, semantic_weight if q == 0 else acoustic_weight))
        if input_audio:
            specs += [StreamSpec(f"in_{q}", "audio", audio_card, 0, False) for q in range(num_codebooks)]
        return cls(specs)

    @classmethod
    def asr(cls, text_card: int, audio_card: int, num_codebooks: int, text_delay: int) -> Streams:
        """Speech to text: the model hears the audio (input only) and writes ``text_delay`` frames later."""
        return cls.build(text_card, audio_card, num_codebooks, text_delay=text_delay, audio_generated=False)

    @classmethod
    def tts(cls, text_card: int, audio_card: int, num_codebooks: int, audio_delay: int,
            acoustic_delay: int = 1) -> Streams:
        """Text to speech: the text stream leads (its word tokens are forced at generation, the model
        chooses where words go by sampling PAD/EPAD), the audio follows ``audio_delay`` frames later."""
        return cls.build(text_card, audio_card, num_codebooks, audio_delay=audio_delay,
                         acoustic_delay=acoustic_delay, text_weight=0.5, semantic_weight=1.0, acoustic_weight=0.5)


def _delays(delays: Sequence[int] | Streams, k: int) -> list[int]:
    d = delays.delays if isinstance(delays, Streams) else [int(x) for x in delays]
    if len(d) != k:
        raise ValueError(f"{len(d)} delays for {k} streams")
    if min(d) < 0:
        raise ValueError(f"delays must be >= 0, got {d}")
    return d


def apply_delays(tokens: torch.Tensor, delays: Sequence[int] | Streams, fill: Sequence[int] | int | None = None,
                 lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift stream ``k`` of ``tokens [B, K, T]`` right by ``delays[k]`` frames.

    Returns ``(delayed [B, K, T + max_delay], valid [B, K, T + max_delay])``: ``valid`` is True
    where the delayed stream holds one of the input frames (frames ``>= lengths[b]`` of item ``b``
    count as absent). Elsewhere ``delayed`` holds ``fill[k]`` (default: the streams' fill ids when
    ``delays`` is a :class:`Streams`, else :data:`ZERO`)."""
    if tokens.dim() != 3:
        raise ValueError(f"tokens must be [B, K, T], got shape {tuple(tokens.shape)}")
    b, k, t = tokens.shape
    d = _delays(delays, k)
    if fill is None:
        fill = delays.fill_ids if isinstance(delays, Streams) else ZERO
    fills = [fill] * k if isinstance(fill, int) else list(fill)
    m = max(d)
    frame = torch.arange(t + m, device=tokens.device)
    delayed = torch.empty(b, k, t + m, dtype=tokens.dtype, device=tokens.device)
    valid = torch.zeros(b, k, t + m, dtype=torch.bool, device=tokens.device)
    n = torch.full((b,), t, device=tokens.device) if lengths is None else lengths.to(tokens.device)
    for i in range(k):
        delayed[:, i] = fills[i]
        delayed[:, i, d[i]: d[i] + t] = tokens[:, i]
        src = frame - d[i]
        valid[:, i] = (src[None] >= 0) & (src[None] < n[:, None])
        delayed[:, i] = torch.where(valid[:, i], delayed[:, i], torch.full_like(delayed[:, i], fills[i]))
    return delayed, valid


def undo_delays(delayed: torch.Tensor, delays: Sequence[int] | Streams) -> torch.Tensor:
    """Inverse of :func:`apply_delays`: ``[B, K, T']`` -> ``[B, K, T' - max_delay]`` aligned frames."""
    if delayed.dim() != 3:
        raise ValueError(f"tokens must be [B, K, T], got shape {tuple(delayed.shape)}")
    b, k, tp = delayed.shape
    d = _delays(delays, k)
    t = tp - max(d)
    if t < 0:
        raise ValueError(f"{tp} frames are fewer than the largest delay ({max(d)})")
    return torch.stack([delayed[:, i, d[i]: d[i] + t] for i in range(k)], dim=1)


def place_words(word_tokens: Sequence[Sequence[int]], word_starts: Sequence[float], frame_rate: float,
                num_frames: int, pad_id: int, epad_id: int, end_time: float | None = None
                ) -> tuple[torch.Tensor, int]:
    """The text stream of one utterance: each word's tokens from the frame where the word starts.

    The frame before a word's first token holds EPAD; a word that would overlap the previous one
    is pushed later. ``end_time`` (the end of the last word) adds one more EPAD where the speech
    ends, with no word after it: the end-of-speech mark TTS stops on. Returns
    ``(stream [num_frames], words_placed)``; words that no longer fit are dropped (their count is
    ``len(word_tokens) - words_placed``) and so is the end mark then."""
    out = torch.full((num_frames,), pad_id, dtype=torch.long)
    cursor, placed = 0, 0
    for toks, start in zip(word_tokens, word_starts):
        if not toks:
            continue
        first = max(int(math.floor(start * frame_rate + 1e-6)), cursor + 1)
        if first + len(toks) > num_frames:
            break
        out[first - 1] = epad_id
        out[first: first + len(toks)] = torch.as_tensor(list(toks), dtype=torch.long)
        cursor = first + len(toks)
        placed += 1
    if end_time is not None and placed == sum(1 for t in word_tokens if t):
        end = max(int(math.floor(end_time * frame_rate + 1e-6)), cursor)
        if end < num_frames:
            out[end] = epad_id
    return out, placed
