"""Speaker.speak's frame bookkeeping, with the LM's sampling replaced by a scripted streamer."""

import torch

import tokenlm.lm.tasks as tasks
from tokenlm.lm.streams import UNGENERATED


class ScriptedStreamer:
    """Emits EPAD whenever the text is the model's to choose, and code 0 on every audio stream."""

    def __init__(self, model, batch, sampling=None, generator=None):
        self.epad = model.streams[0].epad_id

    def start(self):
        pass

    def step(self, provided, allowed=None):
        out = torch.zeros_like(provided)
        out[:, 0] = torch.where(provided[:, 0] == UNGENERATED, torch.full_like(provided[:, 0], self.epad),
                                provided[:, 0])
        return out


def test_speak_cut_by_the_length_limit_right_after_the_last_word(monkeypatch):
    # one word of n pieces: EPAD at frame 0, the pieces at 1..n, EPAD (the end) at n + 1; a length
    # limit that stops it before frame n + 1 + the largest delay leaves the later codebooks short of
    # the end. The cut must fall where every codebook has a frame, whatever the limit.
    monkeypatch.setattr(tasks, "LMStreamer", ScriptedStreamer)
    sp = tasks.Speaker("tts")
    delays = [s.delay for s in sp.streams if s.kind == "audio"]
    assert len(set(delays)) > 1  # codebooks at different delays: the case that needs care
    hop = round(sp.codec.sample_rate / sp.frame_rate)
    for seconds in [0.04 * i for i in range(1, 9)] + [None]:
        wav = sp.speak("cat", max_seconds=seconds)
        assert wav.dim() == 2 and wav.shape[-1] % hop == 0 and wav.shape[-1] >= hop
        assert torch.isfinite(wav).all()
