"""Frame-level engines for live sessions: ASR, TTS and full duplex, many sessions in one batch.

An :class:`Engine` owns one LM (:class:`~tokenlm.lm.generate.LMStreamer` with ``max_sessions``
slots) and one codec in streaming mode. Sessions :meth:`~Engine.open` a slot and
:meth:`~Engine.close` it; each :meth:`~Engine.step` advances the sessions it is given by exactly one
frame (``hop_length`` samples, 40 ms for the default codec), all of them in one batched LM step and
one batched codec call; the other sessions do not move. This is what the server (``tokenlm serve``),
the offline ``tokenlm duplex`` command and the load test run on.

- ``asr``: user audio in, the words out as they become final (times from the session start).
- ``tts``: :meth:`TTSEngine.say` queues text; each step gives a frame of speech.
- ``duplex``: user audio in; the model's words (inner monologue) and a frame of its speech out,
  ``3`` frames behind (its audio streams' delay), at every step.

>>> eng = load_engine("duplex", max_sessions=4)          # doctest: +SKIP
>>> s = eng.open()
>>> out = eng.step({s: frame_of_audio})[s]               # out.words, out.audio ([640] float32)
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass, field

import torch

from ..errors import TokenLMError
from .beam import BeamSearch, BeamSettings, beam_frame, lexicon_for
from .checkpoint import LoadedLM, load_lm
from .generate import LMStreamer, Sampling
from .streams import UNGENERATED, ZERO
from .tasks import (
    TRANSCRIBE_MAX_SECONDS,
    TTS_MAX_WORDS,
    TTS_TAIL_SECONDS,
    PauseCutter,
    Word,
    WordDecoder,
    load_codec_for,
    resolve_word_lm,
    split_for_speech,
    tts_sampling,
)

__all__ = ["SessionsFull", "FrameOut", "Engine", "ASREngine", "TTSEngine", "DuplexEngine", "load_engine",
           "MODES", "toy_lm"]

MODES = ("asr", "tts", "duplex")


class SessionsFull(TokenLMError):
    """Every session slot of an engine is in use."""


@dataclass
class FrameOut:
    frame: int  # the session's frame index (0-based)
    words: list[Word] = field(default_factory=list)  # words that became final at this frame
    audio: torch.Tensor | None = None  # [hop_length] float32: the model's speech for this frame
    done: bool = False  # tts: everything queued has been spoken


class Engine:
    """Base class: slots, the LM streamer, the codec's streaming state (see the module docstring)."""

    mode = ""
    width = 1  # LM rows per session (an ASR beam search keeps one per history)

    def __init__(self, lm: LoadedLM | str, codec=None, max_sessions: int = 8, device: str = "cpu",
                 sampling: Sampling | list[Sampling] | None = None, seed: int = 0, quantize: str | None = None,
                 compile: bool = False):
        if max_sessions < 1:
            raise TokenLMError(f"max_sessions must be >= 1, got {max_sessions}")
        self.lm = lm if isinstance(lm, LoadedLM) else load_lm(lm, device, quantize)
        if self.lm.task != self.mode:
            raise TokenLMError(f"this LM was trained for '{self.lm.task}', not for '{self.mode}'")
        self.device = torch.device(device)
        # the codec keeps its streaming state in its modules: each engine needs its own copy
        self.codec = copy.deepcopy(load_codec_for(self.lm, codec, device))
        self.model, self.tokenizer = self.lm.model, self.lm.tokenizer
        self.streams = self.model.streams
        self.q = self.lm.codec_info.get("num_codebooks", self.codec.num_codebooks)
        self.sample_rate, self.frame_rate = self.codec.sample_rate, self.codec.frame_rate
        self.hop_length = self.codec.hop_length
        self.max_sessions = max_sessions
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.streamer = LMStreamer(self.model, max_sessions * self.width, sampling=sampling or self.default_sampling(),
                                   generator=self.generator, compile=compile)
        self._ctx = self.codec.streaming(max_sessions)
        self._ctx.__enter__()
        self._open: set[int] = set()
        self.t = [0] * max_sessions

    def default_sampling(self) -> list[Sampling]:
        return [Sampling()] * len(self.streams.generated)

    # --- sessions
    @property
    def live(self) -> list[int]:
        return sorted(self._open)

    def open(self) -> int:
        free = [i for i in range(self.max_sessions) if i not in self._open]
        if not free:
            raise SessionsFull(f"all {self.max_sessions} {self.mode} sessions are in use")
        slot = free[0]
        self._open.add(slot)
        self.t[slot] = 0
        self.streamer.start(self._lm_rows([slot]))
        mask = torch.zeros(self.max_sessions, dtype=torch.bool)
        mask[slot] = True
        self.codec.reset_streaming(mask)
        self._reset(slot)
        return slot

    def close(self, slot: int) -> None:
        if slot in self._open:
            self._open.discard(slot)
            self.streamer.stop(self._lm_rows([slot]))

    def _reset(self, slot: int) -> None:
        pass

    def _check(self, inputs: dict) -> list[int]:
        rows = sorted(inputs)
        for r in rows:
            if r not in self._open:
                raise TokenLMError(f"session slot {r} is not open")
        return rows

    def _encode(self, inputs: dict, rows: list[int]) -> dict[int, torch.Tensor]:
        """User audio of the rows that have some -> codes ``[Q]`` per row (one batched call)."""
        have = [r for r in rows if inputs[r] is not None]
        if not have:
            return {}
        wav = []
        for r in have:
            x = torch.as_tensor(inputs[r], dtype=torch.float32).reshape(-1)
            if x.numel() != self.hop_length:
                raise TokenLMError(f"a frame is {self.hop_length} samples, got {x.numel()}")
            wav.append(x)
        with self.codec.streaming_rows(have, "encoder"):
            codes = self.codec.encode(torch.stack(wav)[:, None].to(self.device), num_codebooks=self.q)
        return {r: codes[i, :, 0].cpu() for i, r in enumerate(have)}

    def _decode(self, codes: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        if not codes:
            return {}
        rows = sorted(codes)
        with self.codec.streaming_rows(rows, "decoder"):
            wav = self.codec.decode(torch.stack([codes[r] for r in rows])[:, :, None].to(self.device))
        return {r: wav[i, 0].float().cpu() for i, r in enumerate(rows)}

    def _lm_rows(self, slots: list[int]) -> list[int]:
        """The streamer's rows of these session slots."""
        w = self.width
        return [s * w + i for s in slots for i in range(w)]

    def _lm_step(self, provided: torch.Tensor, rows: list[int], fn=None, **kw) -> torch.Tensor | None:
        """One LM step in which only the sessions ``rows`` advance (``fn()`` instead of the
        streamer's own step when given)."""
        st = self.streamer
        keep = st.live.clone()
        st.live = torch.zeros_like(keep)
        st.live[self._lm_rows(rows)] = True
        try:
            if fn is not None:
                return fn()
            return st.step(provided, **kw).cpu()
        finally:
            st.live = keep

    def step(self, inputs: dict[int, torch.Tensor | None]) -> dict[int, FrameOut]:
        raise NotImplementedError

    def __del__(self):
        try:
            self._ctx.__exit__(None, None, None)
        except Exception:
            pass


class ASREngine(Engine):
    """Greedy by default: one LM row per session, a word out as soon as its EPAD is written.
    ``beam=N`` (or :class:`~tokenlm.lm.beam.BeamSettings`): a phone ASR's beam search with its
    lexicon and word language model (``word_lm``: as for :class:`~tokenlm.lm.tasks.Transcriber`,
    None for the checkpoint's own), ``N`` LM rows per session; a word comes out once every
    history of its session agrees on it (later than greedy's, and better words).

    Like :meth:`~tokenlm.lm.tasks.Transcriber.session`, a session starts a fresh LM context at a
    pause once its current one holds 3 s (:class:`~tokenlm.lm.tasks.PauseCutter`; ``max_seconds``,
    10 s, sets when any quiet frame will do; inf: never): the audio since the pause is replayed
    into it, in extra LM steps for the sessions that restart (batched together)."""

    mode = "asr"
    max_seconds = TRANSCRIBE_MAX_SECONDS

    def __init__(self, *a, beam: int | BeamSettings | None = None, word_lm=None, **kw):
        if isinstance(beam, bool) or not isinstance(beam, (int, BeamSettings, type(None))):
            raise TokenLMError(f"beam must be a width or BeamSettings, got {beam!r}")
        if isinstance(beam, int) and beam < 0:
            raise TokenLMError(f"beam width must be >= 0, got {beam}")
        self.settings = BeamSettings(beam=beam) if isinstance(beam, int) and beam > 0 else \
            (beam if isinstance(beam, BeamSettings) else None)
        self.width = max(1, self.settings.beam) if self.settings else 1
        super().__init__(*a, **kw)
        self.delay = self.streams[0].delay
        self.decoders = [WordDecoder(self.tokenizer, self.frame_rate) for _ in range(self.max_sessions)]
        self.origin = [0] * self.max_sessions  # the frame each session's LM context started at
        self.cutters: list[PauseCutter | None] = [None] * self.max_sessions
        self.recent: list[list[torch.Tensor]] = [[] for _ in range(self.max_sessions)]
        self.cuts: list[list[int]] = [[] for _ in range(self.max_sessions)]  # fresh contexts' first frames
        self.word_lm = None
        if self.settings is not None:
            if not getattr(self.tokenizer, "lexicon", None):
                raise TokenLMError("beam search needs a phone ASR (a tokenizer with a lexicon); this one writes "
                                   "sentencepiece pieces: use beam=0")
            self.word_lm = resolve_word_lm(self.lm, word_lm)
            self.lexicon = lexicon_for(self.tokenizer, self.word_lm)
            self.searches: list[BeamSearch | None] = [None] * self.max_sessions
            self.emitted = [0] * self.max_sessions

    def _reset(self, slot):
        self.decoders[slot] = WordDecoder(self.tokenizer, self.frame_rate)
        self.origin[slot], self.recent[slot], self.cuts[slot] = 0, [], []
        self.cutters[slot] = PauseCutter(self.frame_rate, self.delay - 1, max_seconds=self.max_seconds) \
            if self.delay > 1 else None
        if self.settings is not None:
            s0 = self.streams[0]
            self.searches[slot] = BeamSearch(self.lexicon, self.settings, self.tokenizer.vocab_size, s0.pad_id,
                                             s0.epad_id)
            self.emitted[slot] = 0

    @torch.no_grad()
    def step(self, inputs):
        rows = self._check(inputs)
        if not rows:
            return {}
        codes = self._encode(inputs, rows)
        if self.settings is not None:
            out = self._beam_step(rows, codes)
        else:
            provided = torch.full((self.max_sessions, len(self.streams)), ZERO, dtype=torch.long)
            provided[:, 0] = self.streams[0].pad_id
            for r in rows:
                if r in codes:
                    provided[r, 1: 1 + self.q] = codes[r]
                if self.t[r] - self.origin[r] >= self.delay:
                    provided[r, 0] = UNGENERATED
            tokens = self._lm_step(provided, rows)
            out = {}
            for r in rows:
                t = self.t[r]
                text = t - self.origin[r] >= self.delay
                words = self.decoders[r].push(t - self.delay, int(tokens[r, 0])) if text else []
                out[r] = FrameOut(t, words)
                self.t[r] += 1
        self._cut_at_pauses(inputs, codes)
        return out

    def _cut_at_pauses(self, inputs: dict, codes: dict[int, torch.Tensor]) -> None:
        """Feed each session's frame power to its cutter; sessions at a pause get a fresh LM context
        with the audio since the pause replayed (text padded), in steps shared by all of them."""
        restart = {}
        for r in inputs:
            cutter = self.cutters[r]
            if cutter is None:
                continue
            c = codes.get(r, torch.full((self.q,), ZERO, dtype=torch.long))
            self.recent[r] = (self.recent[r] + [c])[-self.delay:]
            audio = inputs[r] is not None
            power = float(torch.as_tensor(inputs[r], dtype=torch.float32).pow(2).mean()) if audio else 0.0
            cut = cutter.push(power, audio)
            if cut is not None:
                restart[r] = self.recent[r][len(self.recent[r]) - (self.t[r] - cut):]
                self.origin[r] = cut
                self.cuts[r].append(cut)
        if not restart:
            return
        slots = sorted(restart)
        self.streamer.start(self._lm_rows(slots))
        w = self.width
        for i in range(max(len(v) for v in restart.values())):
            frame = torch.full((self.max_sessions * w, len(self.streams)), ZERO, dtype=torch.long)
            frame[:, 0] = self.streams[0].pad_id
            step = [r for r in slots if i < len(restart[r])]
            for r in step:
                frame[r * w: (r + 1) * w, 1: 1 + self.q] = restart[r][i]
            self._lm_step(frame, step)

    @property
    def flush_frames(self) -> int:
        """Frames without audio (``None`` inputs) that let the delayed text catch up at the end."""
        return self.delay

    def _beam_step(self, rows: list[int], codes: dict[int, torch.Tensor]) -> dict[int, FrameOut]:
        w, st = self.width, self.streamer
        frame = torch.full((self.max_sessions * w, len(self.streams)), ZERO, dtype=torch.long)
        frame[:, 0] = self.streams[0].pad_id  # the text of sessions still within the delay
        for r, c in codes.items():
            frame[r * w: (r + 1) * w, 1: 1 + self.q] = c
        searching = {r: self.searches[r] for r in rows if self.t[r] - self.origin[r] >= self.delay}
        self._lm_step(frame, rows, fn=lambda: beam_frame(st, self.model, searching, frame, w, self.settings.expand))
        out = {}
        for r in rows:
            words = []
            if r in searching:
                n = searching[r].stable_words()  # the words every history agrees on are final
                if n > self.emitted[r]:
                    words = searching[r].words(n, self.frame_rate)[self.emitted[r]:]
                    self.emitted[r] = n
            out[r] = FrameOut(self.t[r], words)
            self.t[r] += 1
        return out

    def finish(self, slot: int) -> list[Word]:
        """The last word(s), once the :attr:`flush_frames` frames have been stepped (batched with
        the other sessions, so that one session ending does not stall them)."""
        if self.settings is not None:
            out = self.searches[slot].words(None, self.frame_rate, final=True)[self.emitted[slot]:]
            self.emitted[slot] += len(out)
            return out
        return self.decoders[slot].flush()

    def flush(self, slot: int) -> list[Word]:
        """End of the audio for one session alone: run the text delay out, return the last words."""
        words: list[Word] = []
        for _ in range(self.flush_frames):
            words += self.step({slot: None})[slot].words
        return words + self.finish(slot)


class DuplexEngine(Engine):
    """User audio in (streams ``in_q``), the model's text and audio out (see tokenlm.lm.duplex)."""

    mode = "duplex"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        s = self.streams
        self.text = s.index("text")
        self.audio = [s.index(f"audio_{q}") for q in range(self.q)]
        self.inputs = [s.index(f"in_{q}") for q in range(self.q)]
        self.audio_delays = [s[i].delay for i in self.audio]
        self.lag = max(self.audio_delays)
        self.decoders = [WordDecoder(self.tokenizer, self.frame_rate) for _ in range(self.max_sessions)]
        self.history: list[deque] = [deque(maxlen=self.lag + 1) for _ in range(self.max_sessions)]

    def default_sampling(self):
        # The text is sampled, not greedy: when to start answering is spread over a few frames in the
        # data, so EPAD ("a word starts next") is never the single most likely token of any one frame
        # and greedy decoding would never begin an answer; top-p keeps confident words deterministic.
        # The speech is sampled a little (greedy audio tends to loop).
        text, audio = Sampling(temperature=1.0, top_p=0.9), Sampling(temperature=0.6, top_k=30)
        return [text if self.streams[i].kind == "text" else audio for i in self.streams.generated]

    def _reset(self, slot):
        self.decoders[slot] = WordDecoder(self.tokenizer, self.frame_rate)
        self.history[slot].clear()

    @torch.no_grad()
    def step(self, inputs):
        rows = self._check(inputs)
        if not rows:
            return {}
        codes = self._encode(inputs, rows)
        provided = torch.full((self.max_sessions, len(self.streams)), ZERO, dtype=torch.long)
        for r in rows:
            provided[r, self.text] = UNGENERATED
            for i, d in zip(self.audio, self.audio_delays):
                if self.t[r] >= d:
                    provided[r, i] = UNGENERATED
            if r in codes:
                provided[r, self.inputs] = codes[r]
        tokens = self._lm_step(provided, rows)
        ready = {}
        for r in rows:
            self.history[r].append(tokens[r, self.audio].clone())
            t = self.t[r]
            if t >= self.lag:  # frame t - lag: codebook q was generated at step t - lag + delay_q
                h = self.history[r]
                ready[r] = torch.stack([h[len(h) - 1 - (self.lag - d)][q] for q, d in enumerate(self.audio_delays)])
        wavs = self._decode(ready)
        out = {}
        for r in rows:
            t = self.t[r]
            words = self.decoders[r].push(t, int(tokens[r, self.text]))
            audio = wavs.get(r, torch.zeros(self.hop_length))
            out[r] = FrameOut(t, words, audio)
            self.t[r] += 1
        return out


class TTSEngine(Engine):
    """Text in (:meth:`say`), speech out, one frame per step (the Speaker's rules, per session).

    Each text said is one utterance, or several when it is longer than ``max_words`` words (split
    as :meth:`Speaker.speak` splits it); a session speaks its utterances one after another, each
    from a fresh LM context, and is done when the last has ended."""

    mode = "tts"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        s = self.streams
        self.audio = [s.index(f"audio_{q}") for q in range(self.q)]
        self.audio_delays = [s[i].delay for i in self.audio]
        self.lag = max(self.audio_delays)
        self.tail = int(round(TTS_TAIL_SECONDS * self.frame_rate))  # speech after the end mark, as Speaker
        self.max_words = TTS_MAX_WORDS
        spec = s[0]
        self.pad, self.epad = spec.pad_id, spec.epad_id
        self.pad_or_epad = torch.zeros(spec.output_vocab, dtype=torch.bool)
        self.pad_or_epad[[self.pad, self.epad]] = True
        n = self.max_sessions
        self.queue: list[deque] = [deque() for _ in range(n)]  # words (piece lists) to say
        self.later: list[deque] = [deque() for _ in range(n)]  # utterances (word lists) after this one
        self.u = [0] * n  # the frame where the session's current utterance began
        self.pending: list[list[int]] = [[] for _ in range(n)]
        self.speaking = [False] * n
        self.end_at: list[int | None] = [None] * n
        self.history: list[deque] = [deque(maxlen=self.lag + 1) for _ in range(n)]
        self.decoders = [WordDecoder(self.tokenizer, self.frame_rate) for _ in range(n)]

    def default_sampling(self):
        return tts_sampling(self.streams)  # as Speaker.speak

    def _reset(self, slot):
        self.queue[slot].clear()
        self.later[slot].clear()
        self.u[slot] = 0
        self.pending[slot] = []
        self.speaking[slot] = False
        self.end_at[slot] = None
        self.history[slot].clear()
        self.decoders[slot] = WordDecoder(self.tokenizer, self.frame_rate)

    def say(self, slot: int, text: str) -> None:
        if slot not in self._open:
            raise TokenLMError(f"session slot {slot} is not open")
        if not self.tokenizer.words(text):
            raise TokenLMError(f"nothing to say in {text!r}: no words after normalisation")
        pieces = [text] if len(text.split()) <= self.max_words else split_for_speech(text, self.max_words)
        for piece in pieces:
            words = [self.tokenizer.encode_word(w) for w in self.tokenizer.words(piece)]
            if words:
                self.later[slot].append(words)
        if not self.speaking[slot]:
            self._next_utterance(slot)

    def _next_utterance(self, slot: int) -> None:
        """Start the session's next utterance from a fresh LM context (the first one has it)."""
        if self.t[slot] > 0:
            self.streamer.start(self._lm_rows([slot]))
            self.history[slot].clear()
        self.u[slot] = self.t[slot]
        self.queue[slot].extend(self.later[slot].popleft())
        self.pending[slot] = []
        self.speaking[slot] = True
        self.end_at[slot] = None

    @torch.no_grad()
    def step(self, inputs):
        rows = self._check(inputs)
        if not rows:
            return {}
        provided = torch.full((self.max_sessions, len(self.streams)), ZERO, dtype=torch.long)
        allow = torch.zeros(self.max_sessions, self.pad_or_epad.shape[0], dtype=torch.bool)
        sampled_text = set()
        for r in rows:
            provided[r, self.audio] = UNGENERATED
            for i, d in zip(self.audio, self.audio_delays):
                if self.t[r] - self.u[r] < d:
                    provided[r, i] = ZERO
            if self.pending[r]:
                provided[r, 0] = self.pending[r].pop(0)
            elif self.speaking[r] and self.end_at[r] is None:
                provided[r, 0] = UNGENERATED
                allow[r] = self.pad_or_epad
                sampled_text.add(r)
            else:
                provided[r, 0] = self.pad
        tokens = self._lm_step(provided, rows, allowed={0: allow})
        ready = {}
        done = {}
        more = []  # sessions whose utterance ended with another one to say
        for r in rows:
            t = self.t[r]
            if r in sampled_text and int(tokens[r, 0]) == self.epad:
                if self.queue[r]:
                    self.pending[r] = list(self.queue[r].popleft())
                else:
                    self.end_at[r] = t
            done[r] = self.end_at[r] is not None and t >= self.end_at[r] + self.lag + self.tail
            if done[r] and self.later[r]:
                done[r] = False
                more.append(r)
            elif done[r]:
                self.speaking[r] = False
            self.history[r].append(tokens[r, self.audio].clone())
            if t - self.u[r] >= self.lag:
                h = self.history[r]
                ready[r] = torch.stack([h[len(h) - 1 - (self.lag - d)][q] for q, d in enumerate(self.audio_delays)])
        wavs = self._decode(ready)
        out = {}
        for r in rows:
            t = self.t[r]
            words = self.decoders[r].push(t, int(tokens[r, 0]))
            out[r] = FrameOut(t, words, wavs.get(r, torch.zeros(self.hop_length)), done[r])
            self.t[r] += 1
        for r in more:
            self._next_utterance(r)
        return out


ENGINES = {"asr": ASREngine, "tts": TTSEngine, "duplex": DuplexEngine}


def load_engine(mode: str, lm: LoadedLM | str | None = None, codec=None, max_sessions: int = 8,
                device: str = "cpu", **kw) -> Engine:
    """The engine for ``mode`` on ``lm`` (default: the bundled model named like the mode)."""
    if mode not in ENGINES:
        raise TokenLMError(f"unknown mode '{mode}': choose from {', '.join(MODES)}")
    return ENGINES[mode](mode if lm is None else lm, codec, max_sessions, device, **kw)


def toy_lm(mode: str, folder, num_codebooks: int = 4, seed: int = 0):
    """Write a tiny, untrained LM for ``mode`` (random weights, the bundled codec and the bundled
    ASR model's tokenizer) to ``folder``: for tests of the machinery around a model."""
    import tokenlm.codecs as tc

    from .checkpoint import PRETRAINED_DIR, save_lm
    from .duplex import duplex_streams
    from .model import LM_PRESETS, LMConfig, TokenLM
    from .streams import Streams
    from .tokenizer import TextTokenizer

    if mode not in ENGINES:
        raise TokenLMError(f"unknown mode '{mode}': choose from {', '.join(MODES)}")
    tok = TextTokenizer.load(PRETRAINED_DIR / "duplex" / "tokenizer.model")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codec = tc.load("default")
    card, q = codec.codebook_size, num_codebooks
    streams = {"asr": lambda: Streams.asr(tok.vocab_size, card, q, 4),
               "tts": lambda: Streams.tts(tok.vocab_size, card, q, 2, 1),
               "duplex": lambda: duplex_streams(tok.vocab_size, card, q)}[mode]()
    torch.manual_seed(seed)
    model = TokenLM(LMConfig(streams=streams.to_list(), **LM_PRESETS["tiny"]))
    info = {"name": "default", "fingerprint": codec.token_fingerprint, "num_codebooks": q,
            "frame_rate": codec.frame_rate}
    return save_lm(model, folder, tok, task=mode, codec=info, trained=False)


@torch.no_grad()
def run_duplex(engine: DuplexEngine, wav: torch.Tensor, tail_seconds: float = 2.0,
               progress: bool = False) -> tuple[torch.Tensor, list[Word]]:
    """Run one duplex session over ``wav [T]`` (mono, the engine's rate) frame by frame, then
    ``tail_seconds`` of silence so the model can finish answering. Returns the model's audio
    ``[T']`` (aligned with the input, ``T'`` >= ``T``) and its words (times from the start)."""
    from tqdm import tqdm

    hop = engine.hop_length
    wav = wav.reshape(-1).float()
    n = -(-wav.numel() // hop) + int(round(tail_seconds * engine.frame_rate))
    x = torch.nn.functional.pad(wav, (0, n * hop - wav.numel()))
    slot = engine.open()
    audio, words = [], []
    try:
        for i in tqdm(range(n), desc="duplex", unit="frame", disable=not progress, dynamic_ncols=True):
            out = engine.step({slot: x[i * hop: (i + 1) * hop]})[slot]
            audio.append(out.audio)
            words += out.words
        words += engine.decoders[slot].flush()
    finally:
        engine.close(slot)
    return torch.cat(audio), words
