"""A model-free engine with the API of :mod:`tokenlm.lm.realtime`, for fast, deterministic protocol tests.

- asr: a word ``f<frame>`` every 4th frame (its start/end are that frame's times); flush emits ``end``.
- duplex: the same words, and the input audio echoed at half volume as the model's audio.
- tts: each queued word is "spoken" over 3 frames of a quiet tone; ``done`` on the frame that
  finishes the text.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from tokenlm.errors import TokenLMError


class SessionsFull(TokenLMError):
    pass


@dataclass
class Word:
    word: str
    start: float
    end: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FrameOut:
    frame: int
    words: list
    audio: torch.Tensor | None
    done: bool = False


class FakeEngine:
    sample_rate, frame_rate, hop_length = 16000, 25.0, 640

    def __init__(self, mode: str, max_sessions: int = 4, step_seconds: float = 0.0):
        self.mode, self.max_sessions, self.step_seconds = mode, max_sessions, step_seconds
        self._frame: dict[int, int] = {}
        self._tts: dict[int, list[str]] = {}
        self._tts_left: dict[int, int] = {}
        self.batches: list[list[int]] = []  # the slots of every step, for tests

    @property
    def live(self) -> list[int]:
        return sorted(self._frame)

    def open(self) -> int:
        for slot in range(self.max_sessions):
            if slot not in self._frame:
                self._frame[slot] = 0
                self._tts[slot], self._tts_left[slot] = [], 0
                return slot
        raise SessionsFull(f"all {self.max_sessions} sessions are in use")

    def close(self, slot: int) -> None:
        self._frame.pop(slot, None)
        self._tts.pop(slot, None)
        self._tts_left.pop(slot, None)

    def say(self, slot: int, text: str) -> None:
        words = text.split()
        if not words:
            raise TokenLMError("nothing to say")
        self._tts[slot] += words

    def flush(self, slot: int) -> list[Word]:
        t = self._frame[slot] / self.frame_rate
        return [Word("end", t, t + 0.04)]

    def step(self, inputs: dict) -> dict[int, FrameOut]:
        if self.step_seconds:
            time.sleep(self.step_seconds)
        self.batches.append(sorted(inputs))
        outs = {}
        for slot, x in inputs.items():
            if slot not in self._frame:
                raise RuntimeError(f"slot {slot} is not open")
            f = self._frame[slot]
            self._frame[slot] = f + 1
            t = f / self.frame_rate
            if self.mode == "tts":
                words, done, audio = [], False, torch.zeros(self.hop_length)
                if self._tts_left[slot] == 0 and self._tts[slot]:
                    self._tts_left[slot] = 3
                    words = [Word(self._tts[slot].pop(0), t, t + 0.12)]
                if self._tts_left[slot]:
                    self._tts_left[slot] -= 1
                    audio = 0.1 * torch.sin(torch.arange(self.hop_length) * 0.1)
                    done = self._tts_left[slot] == 0 and not self._tts[slot]
                outs[slot] = FrameOut(f, words, audio, done)
                continue
            if x is not None:
                assert x.shape == (self.hop_length,) and x.dtype == torch.float32
            words = [Word(f"f{f}", t, t + 0.04)] if f % 4 == 3 else []
            audio = None
            if self.mode == "duplex":
                audio = torch.zeros(self.hop_length) if x is None else 0.5 * x
            outs[slot] = FrameOut(f, words, audio)
        return outs


def fake_engines(max_sessions: int = 4, step_seconds: float = 0.0, modes=("asr", "tts", "duplex")) -> dict:
    return {m: FakeEngine(m, max_sessions, step_seconds) for m in modes}
